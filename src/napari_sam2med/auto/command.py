"""``sam2med auto``: segment a stack with no clicks (AutoSAM2 prompt encoder + frozen SAM2).

Usage::

    sam2med auto STACK --prompt-encoder NAME|PROMPT.pt --out LABELS.tif|.zarr|.nii.gz|.nrrd
                 [--video-mode per-frame|first-frame-propagate] [--axis axial|coronal|sagittal]
                 [--window LO HI] [--label 1] [--overwrite] [--no-progress]
                 [--model NAME] [--checkpoint PATH | --random-init] [--image-size N] [--device auto] [--offline]

``--model`` and ``--image-size`` default to the SAM2 recorded in the prompt-encoder file; the
SAM2 weights in use must be the ones it was trained against (else exit 2). Inputs and model are
checked before any slice is segmented; labels are written atomically.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._cli_utils import UserError, add_model_args, bad_input, check_output_path

__all__ = ["add_parser", "run"]

VIDEO_MODES = ("per-frame", "first-frame-propagate")  # auto.infer.VideoMode values (no torch import here)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``auto`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "auto", help="segment a stack with no clicks (AutoSAM2 prompt encoder)",
        description="Segment one object through a stack with a learned prompt encoder and frozen SAM2.",
    )
    p.add_argument("stack", help="(Z,Y,X), (T,Y,X) or (T,Y,X,C) stack: .tif/.tiff, .zarr, .npy, .npz, "
                                 ".nii/.nii.gz, .nrrd or a DICOM series folder")
    p.add_argument("--prompt-encoder", required=True, metavar="NAME|PATH",
                   help="AutoSAM2 prompt encoder: a shipped name or a file from `sam2med train --auto-prompt`")
    p.add_argument("--out", required=True, help="label stack to write: .tif/.tiff, .zarr, .nii/.nii.gz or .nrrd")
    p.add_argument("--video-mode", default="per-frame", choices=VIDEO_MODES,
                   help="per-frame (default): every slice on its own; first-frame-propagate: auto-prompt the "
                        "first slice and propagate it with SAM2's memory")
    p.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"))
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="contrast window for non-uint8 data (default: 0.5/99.5 percentiles)")
    p.add_argument("--label", type=int, default=1, help="label id written for the object (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p)
    p.set_defaults(func=run, model=None)  # None: the SAM2 recorded in the prompt-encoder file
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sam2med auto``; returns the exit status (bad input raises ``UserError``)."""
    import torch
    from tqdm import tqdm

    from ..engine.progress import run_to_end
    from ..engine.volume import check_output, label_suffix, open_volume
    from ..sam2 import load_model
    from .channels import check_stack
    from .infer import NoObjectFound, auto_segment_to_file
    from .prompt_net import load_prompt_net
    from .shipped import resolve_prompt_encoder

    with bad_input():
        if args.label < 1 or args.label > 65535:
            raise UserError("--label must be in 1..65535")
        if label_suffix(args.out) == ".dcm":
            raise UserError("DICOM-SEG output is not supported by `auto` yet; use .nii.gz, .nrrd, .tif or .zarr")
        out_path = check_output_path(args.out, args.overwrite)
        try:
            stack = open_volume(args.stack, window=args.window, axis=args.axis)
        except (ValueError, TypeError) as err:
            raise UserError(f"{args.stack}: {err}") from None
        check_output(out_path, stack)
        encoder = resolve_prompt_encoder(args.prompt_encoder)  # a shipped name or a file
        _, rec = load_prompt_net(encoder)  # reads the recorded SAM2 (no check yet)
        model = load_model(args.model or rec["name"], image_size=args.image_size or int(rec["image_size"]),
                           checkpoint=args.checkpoint, random_init=args.random_init, device=args.device,
                           offline=args.offline or None, progress=not args.no_progress)
        net, _ = load_prompt_net(encoder, model)  # refuses other SAM2 weights
        try:  # a multi-channel encoder needs a stack of its named channels (auto.channels)
            check_stack(net.config.input_channels, stack, args.video_mode == "first-frame-propagate")
        except ValueError as err:
            raise UserError(f"{args.stack}: {err}") from None
    torch.set_grad_enabled(False)
    gen = auto_segment_to_file(model, net, stack, out_path, args.video_mode, obj_id=args.label)
    with tqdm(desc="auto", unit="slice", disable=args.no_progress, file=sys.stderr) as bar:
        def step(s) -> None:
            bar.total = s.total
            bar.update(1)

        try:
            run_to_end(gen, step)
        except NoObjectFound as err:  # nothing on the first slice (first-frame-propagate): exit 2
            raise UserError(str(err)) from None
    print(f"wrote {out_path} ({len(stack)} slices, {args.video_mode})")
    return 0
