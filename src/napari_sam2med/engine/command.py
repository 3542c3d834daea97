"""``sam2med propagate``: segment prompted objects and propagate them through a stack.

Usage::

    sam2med propagate STACK --prompts PROMPTS.json --out LABELS.tif|.zarr|.nii.gz|.nrrd|.dcm
                      [--axis axial|coronal|sagittal]
                      [--direction both] [--memory sam2|slm] [--engine torch|onnx|auto] [--crop-context F] [--window LO HI] [--overwrite] [--no-progress]
                      [--model sam2.1-tiny] [--checkpoint PATH | --random-init]
                      [--image-size N] [--device auto] [--offline]

Inputs, prompts and the model are checked before any slice is segmented; the labels are
written by ``engine.volume.segment_to_file`` (shared with ``sam2med batch``) atomically (a
``.zarr`` output is streamed slice by slice into a temporary store and renamed when complete),
so bad input, a crash or Ctrl-C leaves no partial output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._cli_utils import UserError, add_engine_args, add_model_args, bad_input, check_output_path
from .progress import run_to_end

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``propagate`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "propagate", help="propagate point/box prompts through a stack",
        description="Segment prompted objects on their slices and propagate them through the stack.",
    )
    p.add_argument("stack", help="(Z,Y,X), (T,Y,X) or (T,Y,X,C) stack: .tif/.tiff, .zarr, .npy, .npz, "
                                 ".nii/.nii.gz, .nrrd or a DICOM series folder")
    p.add_argument("--prompts", required=True, help="prompts JSON (see README)")
    p.add_argument("--out", required=True,
                   help="label stack to write: .tif/.tiff, .zarr, .nii/.nii.gz or .nrrd (in the input's "
                        "scanner space) or .dcm (DICOM-SEG of a DICOM series input)")
    p.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"),
                   help="slices to propagate through (default axial); the prompts' \"slice\" and (row, col) "
                        "refer to these slices; labels are written in the input's voxel order")
    p.add_argument("--direction", default="both", choices=("forward", "backward", "both"))
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="contrast window for non-uint8 data (default: 0.5/99.5 percentiles)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_args(p, encoder_engine=True, crop=True)
    add_model_args(p)
    p.set_defaults(func=run)
    return p


def _read_prompts(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"prompts file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err.msg} (line {err.lineno})") from None


def run(args: argparse.Namespace) -> int:
    """Run ``sam2med propagate``; returns the exit status (bad input raises ``UserError``)."""
    from tqdm import tqdm

    from ..sam2 import load_model
    from .prompts import PromptSet
    from .volume import check_output, label_suffix, open_volume, segment_to_file

    with bad_input():
        label_suffix(args.out)  # .tif/.tiff/.zarr/.nii/.nii.gz/.nrrd/.dcm
        out_path = check_output_path(args.out, args.overwrite)
        try:
            stack = open_volume(args.stack, window=args.window, axis=args.axis)  # geometry + axis view
        except (ValueError, TypeError) as err:
            raise UserError(f"{args.stack}: {err}") from None
        check_output(out_path, stack)  # e.g. a .dcm output needs a DICOM series input
        prompts = PromptSet.from_json(_read_prompts(args.prompts), len(stack), stack.frame_shape)
        if args.crop_context is not None and args.crop_context != 0 and args.crop_context < 1:
            raise UserError(f"--crop-context must be 0 (off) or at least 1 (the box itself), got {args.crop_context}")
        model = load_model(args.model, image_size=args.image_size, checkpoint=args.checkpoint,
                           random_init=args.random_init, device=args.device, offline=args.offline or None,
                           progress=not args.no_progress)
    gen = segment_to_file(model, stack, prompts, out_path, direction=args.direction, memory=args.memory,
                          engine=args.engine, crop_context=args.crop_context)
    with tqdm(desc="propagate", unit="slice", disable=args.no_progress, file=sys.stderr) as bar:
        def step(s) -> None:
            bar.total = s.total
            bar.update(1)

        run_to_end(gen, step)
    print(f"wrote {out_path} ({len(prompts.object_ids)} objects, {len(stack)} slices)")
    return 0
