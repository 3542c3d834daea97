"""``sam2med train``: fine-tune (or train from scratch) a SAM2 model on labelled volumes.

Usage::

    sam2med train --data PATH [PATH ...] --out RUN_DIR [--resume | --overwrite]
                  [--model sam2.1-tiny] [--checkpoint PATH | --random-init] [--image-size 512]
                  [--preset decoder|full|lora|custom] [--trainable PREFIX ...] [--lora-rank 4]
                  [--memory sam2|slm] [--mode 2d|3d] [--frames 8] [--objects 3]
                  [--prompt box|points|mask|mixed] [--crop [--crop-context 3]]
                  [--steps N] [--batch 1] [--lr 1e-4] [--val NAMES|COUNT|FRACTION] [--val-every 200]

``sam2med train --auto-prompt ...`` trains an AutoSAM2 prompt encoder with SAM2 frozen instead
(:mod:`napari_sam2med.auto.train_command`).

``--data`` takes ``.npz`` files (MedSAM2), ``IMAGE=LABELS`` volume pairs, folders with ``images/`` and
``labels/`` (volumes) or ``images/`` and ``masks/`` (SAM2 layout), and ``synthetic:COUNT[:SEED]``.
Inputs and the model are checked before any work; the run folder holds a resumable state, the best
and last checkpoints (``{"model": state_dict}``) and a run card. Under ``torchrun`` the run is
data-parallel (one process per device or CPU worker).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._cli_utils import MEMORY_KINDS, UserError, add_model_args, bad_input
from ..auto.train_command import add_auto_args

__all__ = ["add_parser", "run", "config_from_args"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser("train", help="fine-tune or train a SAM2 model on labelled volumes",
                              description="Train SAM2 with its own recipe (prompts, corrections, memory) on "
                                          "image + label volumes; resumable; torchrun for several devices.")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help=".npz files, IMAGE=LABELS pairs, images/+labels/ or images/+masks/ folders, synthetic:N")
    p.add_argument("--out", required=True, help="run folder (state, best.pt, last.pt, run card)")
    r = p.add_mutually_exclusive_group()
    r.add_argument("--resume", action="store_true", help="continue the run in --out")
    r.add_argument("--overwrite", action="store_true", help="start again in an existing --out")
    p.add_argument("--val", default="1", help="validation volumes: names (comma-separated), a count or a fraction")
    p.add_argument("--val-data", nargs="*", default=[], metavar="PATH", help="extra volumes used only to validate")
    p.add_argument("--val-objects", type=int, default=4, help="objects validated per volume at most")
    p.add_argument("--data-weights", nargs="*", type=float, default=None,
                   help="sampling weight of each --data entry (default: by volume count)")
    t = p.add_argument_group("what trains")
    t.add_argument("--preset", default="full", choices=("decoder", "full", "lora", "custom"))
    t.add_argument("--trainable", nargs="*", default=[], metavar="PREFIX",
                   help="parameter-name prefixes (custom preset; added to the others)")
    t.add_argument("--lora-rank", type=int, default=4)
    t.add_argument("--memory", default="sam2", choices=MEMORY_KINDS, help="slm: add and train SLM-SAM2 memory")
    t.add_argument("--activation-checkpointing", action="store_true", help="recompute trunk activations")
    s = p.add_argument_group("samples and prompts")
    s.add_argument("--mode", default="3d", choices=("2d", "3d"))
    s.add_argument("--frames", type=int, default=8, help="slices per clip in 3d mode")
    s.add_argument("--objects", type=int, default=3, help="objects per clip at most")
    s.add_argument("--image-fraction", type=float, default=0.0, help="share of single-slice samples in 3d mode")
    s.add_argument("--object-end", type=float, default=0.0,
                   help="share of 3d clips that start near the end of their object (learn to stop)")
    s.add_argument("--prompt", default="mixed", choices=("mixed", "box", "points", "mask"))
    s.add_argument("--crop", action="store_true", help="train on square crops around the prompted object")
    s.add_argument("--crop-context", type=float, default=3.0, help="crop side / box side at inference")
    s.add_argument("--no-augment", action="store_true")
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=1000)
    o.add_argument("--batch", type=int, default=None,
                   help="clips per step (global, over all processes; default 1); --auto-prompt: slices (default 4)")
    o.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-4; --auto-prompt: 2e-3)")
    o.add_argument("--warmup", type=int, default=50)
    o.add_argument("--weight-decay", type=float, default=0.01)
    o.add_argument("--grad-clip", type=float, default=0.1)
    o.add_argument("--loss-weights", type=float, nargs=4, default=(20.0, 1.0, 1.0, 1.0),
                   metavar=("FOCAL", "DICE", "IOU", "OBJ"), help="loss weights (SAM2: 20 1 1 1)")
    o.add_argument("--focal-alpha", type=float, default=0.25, help="focal alpha; negative: no class weighting")
    o.add_argument("--trunk-lr-scale", type=float, default=0.1, help="image-encoder lr factor (full preset)")
    o.add_argument("--layer-decay", type=float, default=0.9, help="layer-wise lr decay of the trunk")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--val-every", type=int, default=200, help="validate every N steps (0: at the end only)")
    o.add_argument("--save-every", type=float, default=180.0, help="save the resumable state every N seconds")
    o.add_argument("--max-minutes", type=float, default=None)
    o.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p)
    add_auto_args(p)  # --auto-prompt: an AutoSAM2 prompt encoder instead (auto/train_command.py)
    p.set_defaults(func=run)
    return p


def _parse_val(text: str):
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return [n for n in text.split(",") if n]
    if not 0 <= value < 1:
        raise UserError(f"--val fraction must be in [0, 1), got {text}")
    return value


def config_from_args(args: argparse.Namespace):
    """The :class:`~.config.TrainConfig` of parsed ``sam2med train`` arguments."""
    from .config import TrainConfig

    return TrainConfig(
        data=list(args.data), out=args.out, val=_parse_val(args.val), val_data=list(args.val_data),
        data_weights=args.data_weights, model=args.model, checkpoint=args.checkpoint, random_init=args.random_init,
        image_size=args.image_size, device=args.device, preset=args.preset, trainable=list(args.trainable),
        lora_rank=args.lora_rank, memory=args.memory, mode=args.mode, frames=args.frames,
        max_objects=args.objects, image_fraction=args.image_fraction, p_object_end=args.object_end,
        prompt=args.prompt, crop=args.crop,
        crop_context=args.crop_context, augment=not args.no_augment, steps=args.steps,
        batch=1 if args.batch is None else args.batch, lr=1e-4 if args.lr is None else args.lr,
        warmup=args.warmup, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        loss_weights=tuple(args.loss_weights), focal_alpha=args.focal_alpha,
        trunk_lr_scale=args.trunk_lr_scale, layer_decay=args.layer_decay,
        activation_checkpointing=args.activation_checkpointing, seed=args.seed, val_every=args.val_every,
        val_objects=args.val_objects, save_every_s=args.save_every, max_minutes=args.max_minutes, threads=args.threads,
    )


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    state = out / "state.pt"
    if resume:
        if not state.is_file():
            raise UserError(f"nothing to resume: {state} does not exist")
        return
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"run folder {out} is not empty (use --resume or --overwrite)")
        for name in ("state.pt", "best.pt", "last.pt", "run_card.json", "run_card.md"):
            (out / name).unlink(missing_ok=True)
    if not out.parent.is_dir():
        raise UserError(f"output folder does not exist: {out.parent}")


def run(args: argparse.Namespace) -> int:
    """Run ``sam2med train``."""
    from tqdm import tqdm

    from ..engine import run_to_end
    from ..sam2.configs import get_config
    from .data import discover, split_by_volume
    from .trainer import train

    if args.auto_prompt:
        from ..auto.train_command import run_auto_prompt

        return run_auto_prompt(args)
    out = Path(args.out).expanduser()
    with bad_input():
        cfg = config_from_args(args)
        get_config(cfg.model, cfg.image_size)
        if cfg.checkpoint and not Path(cfg.checkpoint).expanduser().is_file():
            raise UserError(f"checkpoint file not found: {cfg.checkpoint}")
        vols = discover(cfg.data)
        train_vols, val_vols = split_by_volume(vols, cfg.val, seed=cfg.seed)
        if not train_vols:
            raise UserError("no training volumes left after the validation split")
        for v in train_vols + val_vols:
            if not v.generated:
                v.presence  # noqa: B018 -- an empty label volume is bad input, found before any work
        if cfg.data_weights is not None and len(cfg.data_weights) != len(cfg.data):
            raise UserError(f"--data-weights needs {len(cfg.data)} values, one per --data entry")
        _check_out(out, args.resume, args.overwrite)
    gen = train(cfg, volumes=vols)
    with tqdm(total=cfg.steps, desc="train", unit="step", disable=args.no_progress, file=sys.stderr) as bar:
        def step(p) -> None:
            bar.n = p.step
            post = {"loss": f"{p.loss:.3f}"}
            if p.val_dice is not None:
                post["val_dice"] = f"{p.val_dice:.3f}"
            bar.set_postfix(post, refresh=False)
            bar.refresh()

        res = run_to_end(gen, step)
    best = "n/a" if res.best_dice is None else f"{res.best_dice:.3f}"
    print(f"trained {res.step} steps; best validation Dice {best}; wrote {res.best_path or res.last_path} "
          f"and {out / 'run_card.md'}")
    return 0
