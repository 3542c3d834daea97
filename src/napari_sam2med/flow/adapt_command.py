"""``sam2med flow-adapt``: adapt SAM2Flow to one video without labels.

Usage::

    sam2med flow-adapt VIDEO --points POINTS.json --out WEIGHTS.pt [--steps N]
                       [--weights PATH] [--lr LR] [--device auto]

Fine-tunes the shipped (or ``--weights``) SAM2Flow on ``VIDEO`` with the self-supervised
loss of :mod:`napari_sam2med.flow.adapt` and writes the adapted weights atomically; use
them with ``sam2med flow --weights WEIGHTS.pt`` or pick them in the Flow dock.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._cli_utils import add_device_arg, bad_input, check_output_path

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``flow-adapt`` sub-command."""
    p = subparsers.add_parser(
        "flow-adapt",
        help="adapt SAM2Flow to a video without labels (self-supervised fine-tuning)",
        description="Fine-tune SAM2Flow on one video (census photometric loss with occlusion masking "
        "+ edge-aware smoothness inside the prompted ROIs) and save the adapted weights.",
    )
    p.add_argument("video", help="(T, H, W) video: .tif/.tiff, .zarr or .npy (at least 3 frames)")
    p.add_argument("--points", required=True, help="ROI prompts JSON (as for `sam2med flow`)")
    p.add_argument("--out", required=True, help="adapted weights file (.pt)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps (default 100)")
    p.add_argument("--lr", type=float, default=2e-5, help="learning rate (default 2e-5)")
    p.add_argument("--weights", default=None, help="weights to start from (default: the shipped weights)")
    add_device_arg(p, "SAM2Flow model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sam2med flow-adapt``; bad input raises ``UserError`` (exit 2)."""
    from .command import _open_video
    from .runner import validate_rois, video_shape
    from .types import load_rois_json

    with bad_input(ValueError, FileNotFoundError):
        video = _open_video(args.video)
        if video_shape(video)[0] < 3:
            raise ValueError(f"adaptation needs at least 3 frames, got {video_shape(video)[0]}")
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        if not args.lr > 0:
            raise ValueError(f"--lr must be > 0, got {args.lr}")
        rois = load_rois_json(args.points)
        validate_rois(rois, video_shape(video)[1:])
        out = check_output_path(args.out, args.overwrite, suffixes=(".pt",))
        from .command import make_estimator

        model = make_estimator("sam2flow", args.weights, args.device).model

    from tqdm import tqdm

    from ..engine.progress import run_to_end
    from .adapt import AdaptConfig, adapt_flow
    from .estimators.sam2flow import default_weights_path, save_flow_weights

    source = Path(args.weights) if args.weights else default_weights_path()
    gen = adapt_flow(video, rois, model, AdaptConfig(steps=args.steps, lr=args.lr))
    with tqdm(total=args.steps, unit="step", disable=args.no_progress, file=sys.stderr) as bar:

        def show(progress) -> None:
            bar.set_postfix(loss=f"{progress.loss:.4f}")
            bar.update(1)

        result = run_to_end(gen, show)
    meta = {"adapted_from": source.name, "video": Path(args.video).name, "steps": args.steps, "lr": args.lr,
            "loss_first": result.losses[0], "loss_last": result.losses[-1]}
    with bad_input(OSError):
        save_flow_weights(result.model, out, meta)
    print(f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f} over {args.steps} steps")
    print(f"wrote {out}")
    return 0
