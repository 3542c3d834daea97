"""The training loop: a generator yielding progress, resumable, data-parallel under ``torchrun``.

Run folder::

    state.pt        resume state: model, optimizer, step, RNG, history (weights_only-loadable)
    best.pt         {"model": state_dict} with the best validation Dice (LoRA merged)
    last.pt         {"model": state_dict} at the last save
    run_card.json / run_card.md   data, preset, steps, time, device, loss and validation curves

Every random choice of step ``s``, clip ``k`` derives from ``(seed, s, k)``, so a resumed run
continues exactly, and ``torchrun`` ranks (each taking clips ``k = rank, rank + world, ...`` of
the global batch, gradients averaged by all-reduce) reproduce the one-process run.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator

import numpy as np
import torch

from ..engine.memory import make_policy
from ..io.writers import atomic_write
from ..sam2.build import load_model
from ..sam2.checkpoint import save_checkpoint
from ..sam2.device import autocast_context
from ..sam2.model import SAM2Model
from .clip_forward import forward_clip
from .config import TrainConfig
from .data import LabeledVolume, discover, split_by_volume
from .presets import Preset, add_lora, enable_activation_checkpointing, merge_lora, param_groups, select_trainable
from .sampler import sample_clip
from .validate import mean_dice, validate

__all__ = ["TrainProgress", "TrainResult", "train", "build_for_training", "export_state_dict"]


@dataclass
class TrainProgress:
    """Yielded after every optimisation step."""

    step: int
    total: int
    loss: float
    lr: float
    elapsed_s: float
    val_dice: float | None = None


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    out: Path
    step: int
    best_dice: float | None
    best_path: Path | None
    last_path: Path
    history: dict = field(default_factory=dict)
    model: SAM2Model | None = field(default=None, repr=False)  # the trained model (this process's copy)


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _init_dist(device: torch.device) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def build_for_training(cfg: TrainConfig) -> tuple[SAM2Model, list[str]]:
    """The model of ``cfg`` with its preset applied (train mode); returns it and its trainable names."""
    slm = cfg.memory == "slm"
    model = load_model(cfg.model, image_size=cfg.image_size, checkpoint=cfg.checkpoint, random_init=cfg.random_init,
                       device=cfg.device, offline=True if cfg.checkpoint else None, progress=False,
                       **({"slm": True} if slm else {}))
    if cfg.preset is Preset.LORA:
        add_lora(model, cfg.lora_rank)
        model.to(model.device)
    extra = list(cfg.trainable) if cfg.preset is not Preset.CUSTOM else []
    if slm:
        extra += ["recent_memory_"]  # SLM-SAM2's short-term branch (sam2/slm.py)
    names = select_trainable(model, cfg.preset, prefixes=cfg.trainable, extra_trainable=extra)
    if cfg.activation_checkpointing:
        enable_activation_checkpointing(model)
    return model.train(), names


def export_state_dict(model: SAM2Model, half: bool = False) -> dict[str, torch.Tensor]:
    """Plain (official-layout) state dict: LoRA merged, optionally float16."""
    from .presets import LoRALinear

    sd = model.state_dict()
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        import copy

        clone = copy.deepcopy(model)
        merge_lora(clone)
        sd = clone.state_dict()
    return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in sd.items()}


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / max(cfg.warmup, 1)
    t = min((step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1), 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _clip_seed(seed: int, step: int, k: int) -> int:
    return int(np.random.default_rng([seed, step, k]).integers(2**62))


def _draw(vols: list[LabeledVolume], cfg: TrainConfig, image_size: int, seed: int):
    rng = np.random.default_rng(seed)
    sample_cfg = cfg.sample_config(image_size)
    groups = sorted({v.group for v in vols})
    if cfg.data_weights:
        w = np.array([cfg.data_weights[g] if g < len(cfg.data_weights) else 0.0 for g in groups], float)
    else:
        w = np.array([sum(v.group == g for v in vols) for g in groups], float)
    if w.sum() <= 0:
        raise ValueError("data_weights give every training source weight 0")
    for _ in range(20):  # a tiny object can vanish at the model size: draw again
        g = groups[int(rng.choice(len(groups), p=w / w.sum()))]
        members = [v for v in vols if v.group == g]
        vol = members[int(rng.integers(len(members)))]
        try:
            return sample_clip(vol, sample_cfg, rng)
        except ValueError as err:
            last = err
    raise ValueError(f"no usable training sample in 20 draws: {last}")


def _save_state(path: Path, model, opt, step: int, history: dict, best: float | None, cfg: TrainConfig) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": torch.tensor(step),
             "torch_rng": torch.get_rng_state(), "best": torch.tensor(-1.0 if best is None else best),
             "history": {k: torch.tensor(v, dtype=torch.float64) for k, v in history.items()}}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_state(path: Path, model, opt) -> tuple[int, dict, float | None]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"], strict=True)
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    best = float(state["best"])
    history = {k: v.tolist() for k, v in state["history"].items()}
    return int(state["step"]), history, (None if best < 0 else best)


def _all_reduce_grads(params: list[torch.Tensor]) -> None:
    """Sum gradients over ranks (each rank's loss is already divided by the global batch).

    Parameters unused in this step get a zero gradient in every process count, so that AdamW
    treats them the same with one process or several.
    """
    _, world = _dist()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if world > 1:
            torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)


def train(cfg: TrainConfig, volumes: list[LabeledVolume] | None = None) -> Generator[TrainProgress, None, TrainResult]:
    """Train ``cfg``; yields :class:`TrainProgress` after every step and returns :class:`TrainResult`.

    Parameters
    ----------
    cfg : TrainConfig
        The run.
    volumes : list of LabeledVolume, optional
        Already opened volumes (e.g. from napari layers); default ``discover(cfg.data)``.
    """
    from . import runcard

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    out = Path(cfg.out).expanduser()
    vols = volumes if volumes is not None else discover(cfg.data)
    train_vols, val_vols = split_by_volume(vols, cfg.val, seed=cfg.seed)
    if cfg.val_data:
        val_vols = val_vols + discover(cfg.val_data)
    if not train_vols:
        raise ValueError("no training volumes left after the validation split")
    for v in train_vols + val_vols:
        if not v.generated:
            v.presence  # noqa: B018 -- reads every label volume now: empty ones fail before any work
    torch.manual_seed(cfg.seed)
    model, trainable = build_for_training(cfg)
    device = model.device
    _init_dist(device)
    rank, world = _dist()
    params = [p for p in model.parameters() if p.requires_grad]
    if world > 1:
        for p in model.state_dict().values():
            torch.distributed.broadcast(p, 0)
    groups = param_groups(model, cfg.lr, cfg.weight_decay, trunk_lr_scale=cfg.trunk_lr_scale,
                          layer_decay=cfg.layer_decay)
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    policy = make_policy(cfg.memory)
    image_size = model.config.image_size
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    step, history, best = 0, {"step": [], "loss": [], "lr": [], "val_step": [], "val_dice": [],
                              "val_dice_slice": []}, None
    if state_path.is_file():
        step, history, best = _load_state(state_path, model, opt)
    t0, t_save = time.time(), time.time()
    elapsed0 = history.get("elapsed_s", [0.0])[-1] if history.get("elapsed_s") else 0.0
    history.setdefault("elapsed_s", [])
    best_path = out / "best.pt" if (out / "best.pt").exists() else None
    ran = 0
    loss_acc, loss_n = 0.0, 0

    def save(final: bool = False) -> None:
        nonlocal t_save
        if rank != 0:
            return
        history["elapsed_s"].append(elapsed0 + time.time() - t0)
        _save_state(state_path, model, opt, step, history, best, cfg)
        save_checkpoint(export_state_dict(model), out / "last.pt")
        runcard.write(out, cfg, history, step=step, best=best, train_vols=train_vols, val_vols=val_vols,
                      device=str(device), world=world, trainable=len(trainable), final=final)
        t_save = time.time()

    def run_validation() -> float | None:
        nonlocal best, best_path
        if rank != 0 or not val_vols:
            return None
        scores = validate(model, val_vols, cfg.crop_config, cfg.val_objects)
        d3, d2 = mean_dice(scores)
        history["val_step"].append(step)
        history["val_dice"].append(d3)
        history["val_dice_slice"].append(d2)
        if best is None or d3 > best:
            best = d3
            best_path = save_checkpoint(export_state_dict(model), out / "best.pt")
        return d3

    def _loop():
        nonlocal step, ran, loss_acc, loss_n
        while step < cfg.steps:
            if cfg.max_minutes is not None and time.time() - t0 > cfg.max_minutes * 60:
                break
            factor = _lr_factor(step, cfg)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * g["lr_scale"] * factor
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for k in range(rank, cfg.batch, world):
                seed = _clip_seed(cfg.seed, step, k)
                clip = _draw(train_vols, cfg, image_size, seed)
                torch.manual_seed(seed)  # dropout, identical whatever the rank
                gen = torch.Generator().manual_seed(seed)
                with autocast_context(device):
                    res = forward_clip(model, clip.images.to(device), clip.masks.to(device), gen,
                                       cfg.prompt_config(), cfg.loss_config(), policy=policy)
                loss = res.loss.total / cfg.batch
                loss.backward()
                step_loss += float(loss.detach())
            _all_reduce_grads(params)
            if world > 1:
                t = torch.tensor([step_loss])
                torch.distributed.all_reduce(t)
                step_loss = float(t)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            ran += 1
            loss_acc += step_loss
            loss_n += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                history["step"].append(step)
                history["loss"].append(loss_acc / loss_n)
                history["lr"].append(cfg.lr * factor)
                loss_acc, loss_n = 0.0, 0
            val = None
            if cfg.val_every and step % cfg.val_every == 0:
                val = run_validation()
            if time.time() - t_save > cfg.save_every_s:
                save()
            yield TrainProgress(step, cfg.steps, step_loss, cfg.lr * factor, elapsed0 + time.time() - t0, val)

    if step == 0 and rank == 0 and val_vols:
        run_validation()  # the untrained value, the first point of the curve
    try:
        yield from _loop()
    except (KeyboardInterrupt, GeneratorExit):
        save()  # a cancelled or interrupted run stays resumable
        raise
    if ran and (not history["val_step"] or history["val_step"][-1] != step):
        run_validation()
    save(final=True)
    if world > 1:
        torch.distributed.barrier()
    return TrainResult(out, step, best, best_path, out / "last.pt", history, model)
