"""``sam2med evaluate``: score a model on labelled volumes with a prompting protocol.

Usage::

    sam2med evaluate --data PATH... --out EVAL_DIR
                     [--protocol box-middle|mask-one-slice|points-k] [--points K]
                     [--key-slice largest|middle] [--tolerance MM] [--spacing Z Y X]
                     [--crop-context F] [--memory sam2|slm] [--max-objects N]
                     [--mask-format .tif|.nii.gz|.nrrd] [--no-overlays] [--overwrite] [--no-progress]
                     [--model NAME] [--checkpoint PATH | --random-init] [--image-size N] [--device auto]

``--data`` takes what ``sam2med train`` takes: MedSAM2 ``.npz`` files (``imgs``, ``gts``,
``spacing``) or folders of them, ``IMAGE=LABELS`` pairs of volume files (NIfTI, TIFF, zarr,
.npy), folders with ``images/`` + ``labels/`` (same names) or the SAM2 ``images/<vol>/`` +
``masks/<vol>/`` layout, and ``synthetic:COUNT[:SEED]``. Every input is read and checked before
the model runs; the whole ``EVAL_DIR`` is written atomically at the end (see :mod:`.report`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._cli_utils import UserError, add_engine_args, add_model_args, bad_input, check_output_path
from ..engine.progress import run_to_end

__all__ = ["add_parser", "run"]

PROTOCOLS = ("box-middle", "mask-one-slice", "points-k")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "evaluate", help="score a model on labelled volumes (Dice, IoU, HD95, surface Dice)",
        description="Prompt every labelled object on one slice by a protocol, propagate it through the "
                    "volume with the model, and score it per object and per volume. Writes CSV tables, "
                    "predicted masks, PNG overlays and summary.json to EVAL_DIR.",
    )
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="labelled volumes: .npz (imgs/gts/spacing) or a folder of them, IMAGE=LABELS pairs, "
                        "a folder with images/ and labels/ (or masks/), synthetic:COUNT[:SEED]")
    p.add_argument("--out", required=True, metavar="EVAL_DIR", help="output folder to create")
    p.add_argument("--protocol", default="box-middle", choices=PROTOCOLS,
                   help="box-middle: ground-truth box on the key slice (MedSAM2); mask-one-slice: the "
                        "ground-truth mask there (SLM-SAM2); points-k: K clicks inside the object")
    p.add_argument("--points", type=int, default=3, metavar="K", help="clicks per object for points-k (default 3)")
    p.add_argument("--key-slice", default="largest", choices=("largest", "middle"),
                   help="prompt slice: where the object is largest (default) or the middle of its extent")
    p.add_argument("--tolerance", type=float, default=2.0, metavar="MM",
                   help="surface-Dice tolerance in mm (default 2)")
    p.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="voxel spacing in mm for every volume (default: read from the files, else 1)")
    p.add_argument("--crop-context", type=float, default=None, metavar="F",
                   help="crop around the prompt: the model sees a window F x the box's longer side")
    p.add_argument("--max-objects", type=int, default=None, metavar="N", help="objects per volume, lowest ids first")
    p.add_argument("--seed", type=int, default=0, help="seed of the points-k clicks")
    p.add_argument("--mask-format", default=".tif", choices=(".tif", ".nii.gz", ".nrrd"),
                   help="predicted masks' format (NIfTI/NRRD are placed in the source's geometry)")
    p.add_argument("--no-overlays", action="store_true", help="do not write PNG overlays")
    p.add_argument("--overwrite", action="store_true", help="replace an existing EVAL_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_args(p)
    add_model_args(p)
    p.set_defaults(func=run)
    return p


def _check_volume(vol, spacing) -> None:
    """Read and check one volume's labels (integer, non-empty, 3D, matching the image)."""
    found = False
    for z in range(vol.num_slices):  # slice by slice: label volumes may be lazy (NIfTI, zarr)
        labels = np.asarray(vol.labels[z])
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
                raise ValueError(f"{vol.name}: labels must be integers, got non-integer {labels.dtype} values")
        elif labels.dtype.kind not in "iub":
            raise ValueError(f"{vol.name}: labels must be integers, got dtype {labels.dtype}")
        if labels.size and labels.min() < 0:
            raise ValueError(f"{vol.name}: labels must be >= 0 (0 = background), found {labels.min()}")
        found = found or bool(labels.any())
    if not found:
        raise ValueError(f"{vol.name}: the label volume is empty (no object to evaluate)")
    if len(vol.image.shape) not in (3, 4):
        raise ValueError(f"{vol.name}: image must be (Z, Y, X) or (Z, Y, X, C), got shape {tuple(vol.image.shape)}")
    if spacing is not None:
        vol.spacing = tuple(float(s) for s in spacing)
        return
    src = Path(vol.source.split("=")[0]) if vol.source else None
    if src is not None and (src.is_file() or src.suffix.lower() == ".zarr"):
        from ..io import read_spacing

        # io.read_spacing is the one spacing reader: (z, y, x) for NIfTI, TIFF, zarr and MedSAM2 .npz
        # (whose "spacing" array is ITK (x, y, z) order). Image folders (SAM2 layout) keep theirs.
        vol.spacing = tuple(float(s) for s in read_spacing(src))
    if vol.spacing is not None and len(vol.spacing) != 3:
        raise ValueError(f"{vol.name}: spacing {vol.spacing} does not have 3 values")


def _discover(entries: list[str]) -> list:
    """``train.data.discover`` per entry, so each error names the entry it comes from."""
    from ..train.data import discover

    vols = []
    for entry in entries:
        try:
            vols += discover([entry])
        except (ValueError, OSError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            name = Path(entry.split("=")[0]).name
            raise UserError(msg if name in msg else f"{entry}: {msg}") from None
    names = [v.name for v in vols]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"duplicate volume names: {', '.join(dup)}")
    return vols


def _geometry(vol):
    from ..io import read_geometry

    src = Path(vol.source.split("=")[0]) if vol.source else None
    if src is None or not src.exists():
        return None
    try:
        geometry = read_geometry(src)
    except (ValueError, OSError):
        return None
    return geometry if geometry is not None and tuple(geometry.shape) == tuple(vol.labels.shape) else None


def run(args: argparse.Namespace) -> int:
    """Run ``sam2med evaluate``; returns the exit status (bad input raises ``UserError``)."""
    from tqdm import tqdm

    from ..sam2 import load_model
    from .report import write_report
    from .runner import EvalConfig, evaluate

    with bad_input():
        out = check_output_path(args.out, args.overwrite)
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} exists and is not a folder")
        if args.spacing is not None and min(args.spacing) <= 0:
            raise UserError(f"--spacing must be positive, got {args.spacing}")
        if args.max_objects is not None and args.max_objects < 1:
            raise UserError(f"--max-objects must be at least 1, got {args.max_objects}")
        cfg = EvalConfig(protocol=args.protocol, points=args.points, key_slice=args.key_slice,
                         tolerance=args.tolerance, crop_context=args.crop_context, memory=args.memory,
                         seed=args.seed, max_objects=args.max_objects)
        vols = _discover(args.data)
        for v in vols:
            _check_volume(v, args.spacing)
        model = load_model(args.model, image_size=args.image_size, checkpoint=args.checkpoint,
                           random_init=args.random_init, device=args.device, offline=args.offline or None,
                           progress=not args.no_progress)
    t0 = time.perf_counter()
    with tqdm(desc="evaluate", unit="slice", disable=args.no_progress, file=sys.stderr) as bar:
        def step(s) -> None:
            bar.total = s.total
            bar.set_postfix_str(f"{s.volume} #{s.object_id}", refresh=False)
            bar.update(1)

        results = run_to_end(evaluate(model, vols, cfg), step)
    seconds = time.perf_counter() - t0
    gray = None
    if not args.no_overlays:
        gray = {v.name: _GraySlices(v.stack) for v in vols}
    meta = {"model": args.model, "checkpoint": args.checkpoint, "random_init": bool(args.random_init),
            "image_size": model.image_size, "device": str(model.device), "data": list(args.data),
            "seconds": round(seconds, 2)}
    geometries = {v.name: _geometry(v) for v in vols} if args.mask_format != ".tif" else None
    write_report(out, results, cfg, meta, gray01=gray, mask_format=args.mask_format, geometries=geometries)
    _print_table(results, args.random_init)
    print(f"wrote {out} ({len(results)} volumes, {sum(len(r.object_rows) for r in results)} objects, {seconds:.1f} s)")
    return 0


class _GraySlices:
    """Slices of a stack as float (Y, X) in [0, 1], read on demand (for the overlays)."""

    def __init__(self, stack) -> None:
        self.stack = stack

    def __getitem__(self, z: int) -> np.ndarray:
        return self.stack.normalized(int(z)).mean(axis=-1)


def _print_table(results, random_init: bool) -> None:
    note = "  (RANDOM WEIGHTS: scores say nothing about accuracy)" if random_init else ""
    print(f"volume | objects | 3D Dice | prompted-slice Dice | HD95 mm | surface Dice | over-propagation{note}")
    for r in results:
        v = r.volume_row
        print(f"{r.name} | {v['objects']} | {v['dice']:.3f} | {v['mean_slice_dice']:.3f} | {v['hd95']:.2f} | "
              f"{v['surface_dice']:.3f} | {v['over_propagation']:.3f}")
