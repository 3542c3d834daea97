"""Run card of a training run: ``run_card.json`` (everything) and ``run_card.md`` (for people)."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..io.writers import atomic_write

__all__ = ["write"]


def _curve_rows(history: dict, n: int = 12) -> list[tuple]:
    steps, loss = history.get("step", []), history.get("loss", [])
    if not steps:
        return []
    idx = sorted({round(i * (len(steps) - 1) / max(n - 1, 1)) for i in range(n)})
    return [(steps[i], loss[i]) for i in idx]


def write(out: Path, cfg, history: dict, *, step: int, best: float | None, train_vols, val_vols, device: str,
          world: int, trainable: int, final: bool) -> None:
    """Write ``run_card.json`` and ``run_card.md`` into the run folder (atomically)."""
    elapsed = history.get("elapsed_s", [0.0])[-1] if history.get("elapsed_s") else 0.0
    card = {
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished": bool(final),
        "step": int(step),
        "elapsed_s": float(elapsed),
        "steps_per_s": float(step / elapsed) if elapsed else None,
        "device": device,
        "world_size": int(world),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "trainable_parameters": int(trainable),
        "config": cfg.to_json(),
        "train_volumes": [v.name for v in train_vols],
        "val_volumes": [v.name for v in val_vols],
        "best_val_dice": best,
        "history": history,
    }
    atomic_write(out / "run_card.json", lambda p: p.write_text(json.dumps(card, indent=1)))
    lines = [
        f"# Training run `{Path(out).name}`",
        "",
        f"- model `{cfg.model}` ({'random init' if cfg.random_init else cfg.checkpoint or 'registered weights'}), "
        f"preset `{cfg.preset.value}`, memory `{cfg.memory}`, mode `{cfg.mode.value}` "
        f"({cfg.frames} frames, up to {cfg.max_objects} objects), prompts `{cfg.prompt}`, "
        f"crop around the prompt: {'context %.1f' % cfg.crop_context if cfg.crop else 'no'}",
        f"- {step} / {cfg.steps} steps in {elapsed / 60:.1f} min on {device} x{world} "
        f"({card['steps_per_s'] or 0:.2f} steps/s), batch {cfg.batch}, lr {cfg.lr:g}, seed {cfg.seed}",
        f"- training volumes ({len(train_vols)}): {', '.join(v.name for v in train_vols[:12])}"
        + (" ..." if len(train_vols) > 12 else ""),
        f"- validation volumes ({len(val_vols)}): {', '.join(v.name for v in val_vols)}",
        "- best validation Dice (3D, box on the largest slice, propagated both ways): "
        + ("n/a" if best is None else f"{best:.3f}"),
        "",
        "| step | training loss |",
        "|---:|---:|",
        *[f"| {s} | {v:.3f} |" for s, v in _curve_rows(history)],
        "",
        "| step | validation Dice 3D | Dice on the prompted slice |",
        "|---:|---:|---:|",
        *[f"| {s} | {d:.3f} | {d2:.3f} |" for s, d, d2 in zip(history.get("val_step", []),
                                                             history.get("val_dice", []),
                                                             history.get("val_dice_slice", []))],
        "",
    ]
    atomic_write(out / "run_card.md", lambda p: p.write_text("\n".join(lines)))
