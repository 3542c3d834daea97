"""``sam2med octa``: OCTA retinal-vessel / FAZ segmentation (SAM-OCTA2 modes).

Usage::

    sam2med octa {rv,faz} INPUT --out LABELS.tif|.zarr [--projection] [--case ID]
                 [--gt GT] [--ref-layer K] [--n-pos N] [--n-neg N] [--seed S]
                 [--metrics-csv M.csv] [--model sam2.1-tiny]
                 [--checkpoint PATH | --random-init] [--image-size N] [--device auto] [--offline]
                 [--overwrite] [--no-progress]

``INPUT`` is one of

* a SAM-OCTA2 layer-sequence folder of composite PNGs (reference objects and
  ground truth come from the composites; ``--gt`` overrides the ground truth);
* a plain ``(L, H, W)`` stack (``.tif/.tiff``, ``.zarr``, ``.npy``) with
  ``--gt``: a label stack (L, H, W) (reference = its layer K, also scored) or
  one 2D image (reference for layer K only, no metrics);
* with ``--projection``: a folder holding ``ProjectionMaps/`` (OCTA-500); the
  three projections are segmented as a 3-frame sequence and fused by majority
  vote; the reference / ground truth is ``--gt`` or ``GT_FAZ`` /
  ``GT_LargeVessel`` of the case.

Automatic prompts are drawn on the reference layer K (default: the middle
layer). Bad input prints one line on stderr and exits with 2, writing nothing (the CLI's
one error boundary, ``_cli_utils.run_command``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._cli_utils import UserError, add_model_args, bad_input, check_output_path
from ..engine.progress import run_to_end
from . import datasets as ds
from .metrics import sequence_metrics, write_metrics_csv
from .pipeline import OctaConfig, run_layer_sequence, run_projection
from .prompts import PromptConfig

__all__ = ["add_parser", "run", "OctaJob", "prepare_job"]

OUT_SUFFIXES = (".tif", ".tiff", ".zarr")
STACK_SUFFIXES = (".tif", ".tiff", ".zarr", ".npy")


@dataclass
class OctaJob:
    """Everything a run needs, checked before any model is loaded."""

    images: np.ndarray
    reference: np.ndarray
    ref_layer: int
    ground_truth: np.ndarray | None
    layer_names: list[str]
    projection: bool


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``octa`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "octa",
        help="segment OCTA retinal vessels (rv) or the FAZ (faz) through layers",
        description="SAM-OCTA2-style OCTA segmentation with automatic prompts propagated by SAM2 memory.",
    )
    p.add_argument("task", choices=("rv", "faz"), help="rv: one object per vessel cluster; faz: one object")
    p.add_argument("input", help="layer-sequence folder, (L,H,W) stack, or OCTA-500 root with --projection")
    p.add_argument("--projection", action="store_true", help="en-face mode: FULL, ILM_OPL, OPL_BM fused")
    p.add_argument("--case", default=None, help="case id in --projection mode (default: the only case)")
    p.add_argument("--gt", default=None, help="ground truth / reference annotation (image or stack)")
    p.add_argument("--ref-layer", type=int, default=None, help="layer with the automatic prompts (default middle)")
    p.add_argument("--n-pos", type=int, default=3, help="positive points per object")
    p.add_argument("--n-neg", type=int, default=3, help="negative points per object")
    p.add_argument("--seed", type=int, default=0, help="prompt sampling seed")
    p.add_argument("--min-size", type=int, default=20, help="smallest vessel cluster kept (pixels)")
    p.add_argument("--out", required=True, help="output labels .tif/.tiff/.zarr")
    p.add_argument("--metrics-csv", default=None, help="write per-layer and overall metrics here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p)
    p.set_defaults(func=run)
    return p


def _read_gt(path: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"ground truth not found: {p}")
    if p.suffix.lower() in (".zarr", ".npy"):
        return np.asarray(ds.read_stack(p))
    gt = ds.read_image(p)  # a TIFF may hold a whole (L, H, W) label stack
    if gt.ndim == 3 and gt.shape[-1] in (3, 4):
        return gt[..., :3]  # colour-coded vessels, split per colour later
    return gt


def _projection_job(args) -> OctaJob:
    root = Path(args.input)
    if not root.is_dir():
        raise FileNotFoundError(f"projection root not found: {root}")
    case = args.case
    if case is None:
        cases = ds.list_cases(root)
        if len(cases) != 1:
            raise ValueError(f"{root} holds {len(cases)} cases {cases[:5]}; choose one with --case")
        case = cases[0]
    proj = ds.read_projections(root, case)
    if args.gt:
        gt = _read_gt(args.gt)
    else:
        gt = ds.read_ground_truth(root, case, "FAZ" if args.task == "faz" else "LargeVessel")
    if gt.shape[:2] != proj.images.shape[1:]:
        raise ValueError(f"ground truth shape {gt.shape} differs from projections {proj.images.shape[1:]}")
    scored = gt if gt.ndim == 2 else gt.any(axis=-1)
    return OctaJob(proj.images, gt, 0, scored[None] > 0, [f"{case} fused"], True)


def prepare_job(args: argparse.Namespace) -> OctaJob:
    """Read and check the inputs of ``sam2med octa`` (raises ValueError / FileNotFoundError)."""
    if args.n_pos < 1 or args.n_neg < 0:
        raise ValueError(f"need --n-pos >= 1 and --n-neg >= 0, got {args.n_pos}, {args.n_neg}")
    if args.projection:
        return _projection_job(args)
    path = Path(args.input)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir() and path.suffix.lower() != ".zarr":
        seq = ds.read_layer_sequence(path, task=args.task)
        images, names = seq.images, seq.layer_names
        gt = seq.masks if args.gt is None else _read_gt(args.gt)
        k = len(images) // 2 if args.ref_layer is None else args.ref_layer
        objects = seq.objects if args.task == "rv" and args.gt is None else None
        reference = objects[k] if objects is not None and 0 <= k < len(images) and objects[k].any() else None
    else:
        if path.suffix.lower() not in STACK_SUFFIXES:
            raise ValueError(f"unsupported input {path.name!r}: expected a folder, .tif, .tiff, .zarr or .npy")
        if args.gt is None:
            raise ValueError("a plain stack needs --gt (reference annotation)")
        images = np.asarray(ds.read_stack(path))
        names = [str(i) for i in range(len(images))]
        gt = _read_gt(args.gt)
        k = len(images) // 2 if args.ref_layer is None else args.ref_layer
        reference = None
    if not 0 <= k < len(images):
        raise ValueError(f"--ref-layer {k} outside 0..{len(images) - 1}")
    if gt.ndim == 3 and gt.shape[-1] not in (3, 4) and gt.shape == images.shape:
        scored, ref_from_gt = gt > 0, gt[k]
    elif gt.shape[:2] == images.shape[1:]:
        scored, ref_from_gt = None, gt
    else:
        raise ValueError(f"ground truth shape {gt.shape} does not fit the layers {images.shape}")
    reference = ref_from_gt if reference is None else reference
    if not np.asarray(reference).any():
        raise ValueError(f"the reference annotation on layer {k} is empty")
    return OctaJob(images, reference, k, scored, names, False)


def run(args: argparse.Namespace) -> int:
    """Run ``sam2med octa``; returns the exit status (bad input raises ``UserError``)."""
    with bad_input(ValueError, KeyError, OSError):
        out_path = check_output_path(args.out, args.overwrite, OUT_SUFFIXES)
        csv_path = check_output_path(args.metrics_csv, args.overwrite, (".csv",)) if args.metrics_csv else None
        job = prepare_job(args)
        if csv_path is not None and job.ground_truth is None:
            raise UserError("--metrics-csv needs a ground truth (a label stack as --gt)")
        config = OctaConfig(task=args.task, min_size=args.min_size,
                            prompts=PromptConfig(n_pos=args.n_pos, n_neg=args.n_neg, seed=args.seed))
        from ..sam2 import load_model

        model = load_model(args.model, image_size=args.image_size, checkpoint=args.checkpoint,
                           random_init=args.random_init, device=args.device, offline=args.offline or None,
                           progress=not args.no_progress)

    from tqdm import tqdm

    if job.projection:
        gen = run_projection(model, job.images, job.reference, config)
    else:
        gen = run_layer_sequence(model, job.images, job.reference, job.ref_layer, config)
    with tqdm(total=len(job.images), unit="layer", disable=args.no_progress, file=sys.stderr) as bar:
        result = run_to_end(gen, lambda step: bar.update(1) if step.stage == "propagate" else None)
    labels = result[0][0]
    rows = None
    if job.ground_truth is not None:
        pred = labels[None] if labels.ndim == 2 else labels
        rows = sequence_metrics(pred > 0, job.ground_truth, layer_names=job.layer_names)
    from ..io import write_labels

    write_labels(out_path, labels.astype(np.int32))
    if csv_path is not None and rows is not None:
        write_metrics_csv(csv_path, rows)
    if rows is not None:
        o = rows[-1]
        print(f"overall: dice {o['dice']:.4f} jaccard {o['jaccard']:.4f} hd95 {o['hd95']:.2f}", file=sys.stderr)
    print(f"wrote {out_path}", file=sys.stderr)
    return 0
