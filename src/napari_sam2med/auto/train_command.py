"""``sam2med train --auto-prompt``: train an AutoSAM2 prompt encoder against a frozen SAM2.

Usage::

    sam2med train --auto-prompt --data PATH [PATH ...] --out RUN_DIR [--resume | --overwrite]
                  [--model NAME] [--checkpoint PATH | --random-init] [--image-size N]
                  [--steps 1000] [--batch 4] [--lr 2e-3] [--no-augment] [--val 1] [--seed 0] [--threads N]
                  [--object-id 0] [--empty-fraction 0.1] [--max-slices N]
                  [--prompt-input-size 128] [--prompt-width 16] [--prompt-crop-context F]

``--data`` takes what ``sam2med train`` takes (``.npz``, ``IMAGE=LABELS``, folders, ``octa-faz:ROOT``,
``synthetic:N``). Every labelled slice of the object (``--object-id``; 0: any label) of the training
volumes is a sample, plus a share of slices without it (``--empty-fraction``: "no object here");
validation volumes are held out by volume and scored without clicks at the end.

The run folder gets ``prompt_encoder.pt`` (atomic; records the SAM2 name, its weights'
fingerprint and the checkpoint file's SHA-256; ``sam2med auto --prompt-encoder`` and the dock
load it), ``state.pt`` (``--resume`` continues from it) and ``run_card.json`` / ``run_card.md``.
This module is called by ``train/command.py`` (the one ``train`` parser and error boundary).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._cli_utils import UserError, bad_input

__all__ = ["add_auto_args", "run_auto_prompt", "ENCODER_FILE", "STATE_FILE"]

ENCODER_FILE, STATE_FILE, RECIPE_FILE = "prompt_encoder.pt", "state.pt", "auto_recipe.json"
#: ``sam2med train`` options that only mean something when SAM2 itself trains.
_SAM2_ONLY = ("preset", "trainable", "lora_rank", "memory", "mode", "frames", "objects", "image_fraction",
              "object_end", "prompt", "crop", "val_data", "data_weights", "max_minutes", "activation_checkpointing")


def add_auto_args(p: argparse.ArgumentParser) -> None:
    """Add ``--auto-prompt`` and its options to the ``train`` parser (call after every other argument)."""
    g = p.add_argument_group("AutoSAM2 prompt encoder (--auto-prompt)")
    g.add_argument("--auto-prompt", action="store_true",
                   help="train an AutoSAM2 prompt encoder (no-click segmentation) with SAM2 frozen; writes "
                        "OUT/prompt_encoder.pt for `sam2med auto` and the segment dock")
    g.add_argument("--object-id", type=int, default=0, help="label id of the object to find (0: any label)")
    g.add_argument("--empty-fraction", type=float, default=0.1,
                   help="slices without the object added, as a share of those with it (default 0.1)")
    g.add_argument("--max-slices", type=int, default=None, help="at most this many training slices (random)")
    g.add_argument("--prompt-input-size", type=int, default=128, help="prompt network input side (default 128)")
    g.add_argument("--prompt-width", type=int, default=16, help="prompt network first-level channels (default 16)")
    g.add_argument("--prompt-crop-context", type=float, default=None, metavar="F",
                   help="two stages: locate the object on the whole slice, then prompt SAM2 on a window F times "
                        "its box (0: whole slices; default: the SAM2 model's crop context, e.g. 3 for "
                        "sam2med-small-ct, else 0)")
    p.set_defaults(_defaults={a.dest: a.default for a in p._actions})


def _check_args(args: argparse.Namespace) -> None:
    given = [n for n in _SAM2_ONLY if getattr(args, n, None) != args._defaults.get(n)]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} trains SAM2 itself; it does not apply to --auto-prompt "
                        "(SAM2 stays frozen)")
    if args.object_id < 0 or not 0 <= args.empty_fraction <= 10 or (args.max_slices or 1) < 1:
        raise UserError("--object-id must be >= 0, --empty-fraction in [0, 10], --max-slices >= 1")
    if args.steps < 1 or (args.batch or 1) < 1 or args.prompt_input_size % 16 or args.prompt_input_size < 32:
        raise UserError("--steps and --batch must be >= 1; --prompt-input-size a multiple of 16, at least 32")


def _slices(vols, object_id: int, empty_fraction: float, max_slices: int | None, seed: int):
    """(images in [0, 1], bool masks, names) of the object's slices plus some empty ones."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pos, neg = [], []
    for v in vols:
        for z in range(v.num_slices):
            lab = v.label(z)
            mask = lab == object_id if object_id else lab > 0
            (pos if mask.any() else neg).append((v, z, mask))
    if not pos:
        raise UserError(f"no slice of the training volumes holds {'a label' if not object_id else f'label {object_id}'}")
    k = min(len(neg), int(round(empty_fraction * len(pos))))
    chosen = pos + [neg[i] for i in sorted(rng.choice(len(neg), size=k, replace=False))] if k else list(pos)
    if max_slices is not None and len(chosen) > max_slices:
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), size=max_slices, replace=False))]
    return [v.frame(z) for v, z, _ in chosen], [m for _, _, m in chosen], len(pos)


def _validate(model, net, vols, object_id: int, limit: int = 64) -> float | None:
    import numpy as np

    from ..engine.metrics import dice
    from .infer import auto_mask

    scores = []
    for v in vols:
        for z in range(v.num_slices):
            lab = v.label(z)
            mask = lab == object_id if object_id else lab > 0
            if mask.any() and len(scores) < limit:
                scores.append(dice(auto_mask(model, net, v.frame(z))[0], mask))
    return float(np.mean(scores)) if scores else None


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (out / STATE_FILE).is_file():
            raise UserError(f"nothing to resume: {out / STATE_FILE} does not exist")
        return
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if not out.parent.is_dir():
        raise UserError(f"output folder does not exist: {out.parent}")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"run folder {out} is not empty (use --resume or --overwrite)")
        for name in (ENCODER_FILE, STATE_FILE, RECIPE_FILE, "run_card.json", "run_card.md"):
            (out / name).unlink(missing_ok=True)


def run_auto_prompt(args: argparse.Namespace) -> int:
    """Run ``sam2med train --auto-prompt`` (called inside ``train``'s error boundary)."""
    import torch
    from tqdm import tqdm

    from ..engine import run_to_end
    from ..sam2 import load_model
    from ..sam2.checkpoint import resolve_checkpoint, sha256_of
    from ..sam2.configs import get_config
    from ..train.command import _parse_val
    from ..train.data import discover, split_by_volume
    from .prompt_net import save_prompt_net
    from .training import AutoTrainConfig, config_record, train_prompt_net

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out).expanduser()
    with bad_input():
        _check_args(args)
        get_config(args.model, args.image_size)
        vols = discover(args.data)
        train_vols, val_vols = split_by_volume(vols, _parse_val(args.val), seed=args.seed)
        if not train_vols:
            raise UserError("no training volumes left after the validation split")
        images, masks, n_pos = _slices(train_vols, args.object_id, args.empty_fraction, args.max_slices, args.seed)
        _prepare_out(out, args.resume, args.overwrite)
        ckpt = None if args.random_init else resolve_checkpoint(
            args.model, checkpoint=args.checkpoint, offline=args.offline or None, progress=not args.no_progress)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)  # random init (development): the same weights for the same seed
            model = load_model(args.model, image_size=args.image_size, checkpoint=ckpt,
                               random_init=args.random_init, device=args.device, progress=False)
    cfg = AutoTrainConfig(steps=args.steps, batch_size=args.batch or 4, lr=args.lr or 2e-3,
                          augment=not args.no_augment, input_size=args.prompt_input_size, width=args.prompt_width,
                          crop_context=_crop_context(args, model), seed=args.seed, checkpoint=str(out / STATE_FILE))
    recipe = {"recipe": json.loads(json.dumps(config_record(cfg))), "data": [str(d) for d in args.data], "model": model.config.name,
              "image_size": model.config.image_size, "object_id": args.object_id}
    _check_recipe(out, recipe, args.resume)
    new: list[int] = []  # steps trained by this process (fewer after --resume)
    with tqdm(total=cfg.steps, desc="auto-prompt", unit="step", disable=args.no_progress, file=sys.stderr) as bar:
        def step(s) -> None:
            new.append(s.step)
            bar.n = s.step
            bar.set_postfix({"loss": f"{s.loss:.3f}", "dice": f"{s.dice:.3f}"}, refresh=False)
            bar.refresh()

        res = run_to_end(train_prompt_net(model, images, masks, cfg), step)
    tail = [h["dice"] for h in res.history[-20:]]
    train_dice = float(sum(tail) / len(tail)) if tail else None
    val_dice = _validate(model, res.net, val_vols, args.object_id)
    sam2_rec = {"name": model.config.name, "image_size": model.config.image_size,
                "checkpoint": None if ckpt is None else str(Path(ckpt).resolve()),
                "checkpoint_sha256": f"random-init-seed{args.seed}" if ckpt is None else sha256_of(ckpt)}
    extra = {"recipe": config_record(cfg), "sam2_checkpoint": sam2_rec, "object_id": args.object_id,
             "train_volumes": [v.name for v in train_vols], "val_volumes": [v.name for v in val_vols],
             "train_slices": len(images), "val_dice": val_dice, "train_dice_last20": train_dice}
    enc = save_prompt_net(out / ENCODER_FILE, res.net, model, extra=extra)
    _write_card(out, extra, res, args, n_pos)
    shown = "n/a" if val_dice is None else f"{val_dice:.3f}"
    print(f"trained {len(res.history)} steps ({len(new)} in this run); no-click validation Dice {shown}; wrote {enc} and {out / 'run_card.md'}")
    return 0


def _crop_context(args: argparse.Namespace, model: Any) -> float:
    if args.prompt_crop_context is not None:
        if args.prompt_crop_context < 0:
            raise UserError("--prompt-crop-context must be >= 0")
        return float(args.prompt_crop_context)
    return float(getattr(model.config, "crop_context", None) or 0.0)


def _check_recipe(out: Path, recipe: dict, resume: bool) -> None:
    """A resumed run continues the same recipe (the optimiser's schedule is fixed by ``--steps``)."""
    from ..io.writers import atomic_write

    path = out / RECIPE_FILE
    if resume:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(f"cannot resume: {path} is missing or unreadable") from None
        flat = lambda d: {f"{k}.{j}": w for k, v in d.items() for j, w in (v.items() if isinstance(v, dict)  # noqa: E731
                                                                            else [("", v)])}
        was, now = flat(old), flat(recipe)
        for key in sorted(set(was) | set(now)):
            if was.get(key) != now.get(key):
                raise UserError(f"--resume continues the same run, but {key.strip('.')} is {now.get(key)!r}, "
                                f"not {was.get(key)!r} as in {out}; start a new run or use --overwrite")
        return
    out.mkdir(exist_ok=True)
    text = json.dumps(recipe, indent=1)
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def _write_card(out: Path, extra: dict, res: Any, args: argparse.Namespace, n_pos: int) -> None:
    from ..io.writers import atomic_write

    card = {"written": datetime.now(timezone.utc).isoformat(timespec="seconds"), "kind": "autosam2-prompt-encoder",
            "data": list(args.data), "seconds": round(res.seconds, 1), **extra, "history": res.history}
    atomic_write(out / "run_card.json", lambda p: Path(p).write_text(json.dumps(card, indent=1)))
    s2, val = extra["sam2_checkpoint"], extra["val_dice"]
    lines = [f"# AutoSAM2 prompt encoder `{out.name}`", "",
             f"- frozen SAM2 `{s2['name']}` at {s2['image_size']} px, checkpoint {s2['checkpoint'] or 'random init'} "
             f"(sha256 {s2['checkpoint_sha256'][:16]})",
             f"- {len(res.history)} steps in {res.seconds / 60:.1f} min; {extra['train_slices']} training slices "
             f"({n_pos} with the object) from {len(extra['train_volumes'])} volumes",
             f"- training Dice (last 20 steps): {extra['train_dice_last20'] or 0:.3f}; no-click validation Dice on "
             f"{len(extra['val_volumes'])} held-out volumes: {'n/a' if val is None else f'{val:.3f}'}",
             f"- use: `sam2med auto STACK --prompt-encoder {out / ENCODER_FILE} --out LABELS` with the same SAM2", ""]
    atomic_write(out / "run_card.md", lambda p: Path(p).write_text("\n".join(lines)))
