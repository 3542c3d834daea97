"""``sam2med flow``: blood-flow estimation from a video and vessel point prompts.

Usage::

    sam2med flow VIDEO --points POINTS.json --out FLOW.zarr [--weights PATH]
                 [--method sam2flow|tvl1|ilk] [--span K] [--pixel-size UM] [--fps FPS] [--device auto]

``VIDEO`` is ``.tif/.tiff``, ``.zarr`` or ``.npy`` of shape ``(T, H, W)``. Bad input prints
one line on stderr and exits with code 2, leaving no output behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._cli_utils import add_device_arg, bad_input, check_output_path
from ..engine.progress import run_to_end
from .calibration import check_calibration
from .limits import implausible_warning
from .runner import estimate_flow, flow_output, validate_rois, video_shape
from .types import FlowEstimator, load_rois_json

__all__ = ["add_parser", "run", "make_estimator", "METHODS"]

METHODS = ("sam2flow", "tvl1", "ilk")
VIDEO_SUFFIXES = (".tif", ".tiff", ".zarr", ".npy")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``flow`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "flow",
        help="estimate blood flow (px/frame, µm/s) inside prompted vessels",
        description="Estimate optical flow inside vessel ROIs given by point prompts.",
    )
    p.add_argument("video", help="(T, H, W) video: .tif/.tiff, .zarr or .npy")
    p.add_argument(
        "--points",
        required=True,
        help='ROI prompts JSON: {"rois": [{"id": 1, "points": [[r, c], ...], "labels": [1, 0]}]}',
    )
    p.add_argument("--out", required=True, help="output FLOW.zarr directory (must not exist)")
    p.add_argument(
        "--weights", default=None, help="SAM2Flow checkpoint (default: the shipped weights)"
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="flow method (default: sam2flow when weights are given or shipped, else tvl1)",
    )
    p.add_argument(
        "--span",
        type=int,
        default=1,
        metavar="K",
        help="sam2flow: also measure each frame against the one K frames back and use that flow / K "
        "where motion is slow (sub-pixel cells under noise; twice the cost; default 1 = off)",
    )
    p.add_argument("--pixel-size", type=float, default=None, help="pixel size in µm")
    p.add_argument("--fps", type=float, default=None, help="frame rate in frames/s")
    add_device_arg(p, "sam2flow model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def has_default_weights() -> bool:
    """Whether the shipped SAM2Flow weights file exists."""
    try:
        from .estimators.sam2flow import default_weights_path
    except ImportError:
        return False
    return default_weights_path().is_file()


def make_estimator(method: str, weights: str | None = None, device: str = "auto", span: int = 1) -> FlowEstimator:
    """Build the estimator named ``method``.

    ``sam2flow`` loads ``weights`` (default: the shipped weights) on ``device``; ``span`` > 1
    turns on its k-frame fusion for slow motion (``SAM2FlowEstimator(span=...)``).
    """
    if isinstance(span, bool) or int(span) != span or span < 1:
        raise ValueError(f"--span must be an integer >= 1, got {span!r}")
    if span > 1 and method != "sam2flow":
        raise ValueError(f"--span applies to sam2flow only, not {method}")
    if method == "tvl1":
        from .estimators.classical import TVL1Estimator

        return TVL1Estimator()
    if method == "ilk":
        from .estimators.classical import ILKEstimator

        return ILKEstimator()
    if method == "sam2flow":
        from ..sam2.device import pick_device
        from .estimators.sam2flow import SAM2FlowEstimator, default_weights_path, load_flow_model

        path = Path(weights) if weights is not None else default_weights_path()
        if not path.is_file():
            raise FileNotFoundError(f"SAM2Flow weights not found: {path} (pass --weights PATH)")
        try:
            model = load_flow_model(path, device=pick_device(device))
        except (FileNotFoundError, ValueError):
            raise
        except Exception as exc:  # torch.load / state-dict mismatch: a bad weights file
            raise ValueError(f"cannot load SAM2Flow weights {path}: {exc}".splitlines()[0]) from None
        return SAM2FlowEstimator(model, span=span)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _open_video(path_str: str) -> Any:
    from ..io import read_array

    path = Path(path_str)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"unsupported video {path.name!r}: expected .tif, .tiff, .zarr or .npy")
    video = read_array(path)
    shape = tuple(getattr(video, "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"video must be 3-D (T, H, W), got shape {shape}")
    video_shape(video)  # at least two frames
    kind = getattr(video, "dtype", None)
    if kind is None or kind.kind not in "uif":
        raise ValueError(f"video dtype must be integer or float, got {kind}")
    return video


def run(args: argparse.Namespace) -> int:
    """Run ``sam2med flow``; returns the exit status (bad input raises ``UserError``)."""
    with bad_input(ValueError, FileNotFoundError):
        video = _open_video(args.video)
        rois = load_rois_json(args.points)
        out_path = check_output_path(args.out, args.overwrite)
        # validate everything (points range, calibration) before loading a model
        check_calibration(args.pixel_size, args.fps)
        validate_rois(rois, video_shape(video)[1:])
        method = args.method or ("sam2flow" if args.weights or has_default_weights() else "tvl1")
        estimator = make_estimator(method, args.weights, args.device, getattr(args, "span", 1))

    from tqdm import tqdm

    n_pairs = video_shape(video)[0] - 1
    # Every input was checked above, so a ValueError from here on is a bug (exit 1); only a
    # failing disk (OSError: full, read-only) is reported as one line.
    with bad_input(OSError):
        with flow_output(out_path, overwrite=args.overwrite) as group:
            gen = estimate_flow(
                video, rois, estimator, out=group, pixel_size=args.pixel_size, fps=args.fps
            )
            with tqdm(total=n_pairs, unit="pair", disable=args.no_progress, file=sys.stderr) as bar:
                result = run_to_end(gen, lambda _: bar.update(1))
    speeds = result.mean_speed_um_s if result.mean_speed_um_s is not None else result.mean_speed_px
    unit = "µm/s" if result.mean_speed_um_s is not None else "px/frame"
    warning = implausible_warning(result)
    if warning:
        print(f"sam2med flow: warning: {warning}; the means below leave those pairs out", file=sys.stderr)
    plausible = np.ones(len(speeds), bool)
    plausible[result.implausible_pairs] = False
    for k, roi_id in enumerate(result.roi_ids):
        col = speeds[plausible, k][np.isfinite(speeds[plausible, k])]
        text = f"{float(col.mean()):.3f} {unit}" if col.size else "n/a (empty ROI or no measurable pair)"
        print(f"ROI {roi_id}: mean speed {text}")
    print(f"wrote {out_path}")
    return 0

