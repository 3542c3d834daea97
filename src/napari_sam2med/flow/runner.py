"""Streaming flow estimation over a video: one frame pair at a time, constant memory.

``estimate_flow`` is a generator (see ARCHITECTURE: long work yields progress and
returns its result). Output arrays (``flow``, ``roi``, ``roi_ids``, ``mean_speed_px``
and, when calibrated, ``speed_um_s``/``mean_speed_um_s``) go into a zarr group
(chunked per frame) or any dict-like; :func:`flow_output` writes a ``FLOW.zarr``
atomically (temp directory, then rename).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Iterator, Sequence

import numpy as np

from .calibration import check_calibration, speed_um_per_s
from .limits import implausible_pairs, measurable_limit
from .types import FlowEstimator, FlowStep, RoiPrompt, rois_to_json

__all__ = [
    "FlowProgress",
    "FlowResult",
    "FrameNormalizer",
    "estimate_flow",
    "flow_output",
    "open_flow_output",
    "validate_rois",
    "video_shape",
]


@dataclass
class FlowProgress:
    """Progress of :func:`estimate_flow`: the step just computed and pairs done/total."""

    step: FlowStep
    done: int
    total: int


@dataclass
class FlowResult:
    """Small summary returned by :func:`estimate_flow`.

    Attributes
    ----------
    roi_ids : list of int
        ROI ids, the column order of the speed tables.
    mean_speed_px : np.ndarray
        ``(T-1, n_rois)`` mean speed in px/frame per ROI (NaN where a ROI is empty).
    mean_speed_um_s : np.ndarray or None
        Same in µm/s when ``pixel_size`` and ``fps`` were given.
    roi_map : np.ndarray
        ``(H, W)`` int32 ROI ids of the first pair.
    method : str
        Estimator name.
    pixel_size, fps : float or None
        Calibration used.
    speed_limit_px : float
        Largest speed the method can measure on these frames (:mod:`.limits`).
    implausible_pairs : list of int
        Pairs where a ROI's mean speed exceeds ``speed_limit_px`` (not measurements).
    """

    roi_ids: list[int]
    mean_speed_px: np.ndarray
    mean_speed_um_s: np.ndarray | None
    roi_map: np.ndarray
    method: str
    pixel_size: float | None = None
    fps: float | None = None
    speed_limit_px: float = float("inf")
    implausible_pairs: list[int] = field(default_factory=list)


def video_shape(video: Any) -> tuple[int, int, int]:
    """``(T, H, W)`` of a numpy / zarr / dask array or FrameStack-like object."""
    shape = tuple(int(s) for s in getattr(video, "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"video must be (T, H, W), got shape {shape}")
    if shape[0] < 2:
        raise ValueError(f"video needs at least 2 frames, got {shape[0]}")
    return shape  # type: ignore[return-value]


def _read_frame(video: Any, index: int) -> np.ndarray:
    if hasattr(video, "raw"):  # FrameStack-like lazy stack
        frame = np.asarray(video.raw(index))
    else:
        frame = np.asarray(video[index])
    if frame.ndim == 3:  # (Y, X, C) colour: average to grey
        frame = frame.mean(axis=-1)
    return frame


@dataclass
class FrameNormalizer:
    """Maps raw frames to float32 ``[0, 1]`` with one window for the whole video.

    uint8 frames are divided by 255; float frames already in ``[0, 1]`` are kept;
    anything else uses a percentile window estimated from a few sampled frames
    (so streaming never loads the whole video).
    """

    low: float = 0.0
    high: float = 1.0

    @classmethod
    def from_video(
        cls, video: Any, n_samples: int = 5, percentiles: tuple[float, float] = (0.5, 99.5)
    ) -> "FrameNormalizer":
        """Estimate the window from up to ``n_samples`` evenly spaced frames."""
        n = video_shape(video)[0]
        idx = np.unique(np.linspace(0, n - 1, min(n_samples, n)).round().astype(int))
        first = _read_frame(video, int(idx[0]))
        if first.dtype == np.uint8:
            return cls(0.0, 255.0)
        samples = [first] + [_read_frame(video, int(i)) for i in idx[1:]]
        values = np.concatenate([s.ravel().astype(np.float64) for s in samples])
        values = values[np.isfinite(values)]
        if values.size == 0:
            return cls(0.0, 1.0)
        if np.issubdtype(first.dtype, np.floating) and values.min() >= 0 and values.max() <= 1:
            return cls(0.0, 1.0)
        low, high = np.percentile(values, percentiles)
        if high <= low:
            low, high = float(values.min()), float(values.max())
        if high <= low:
            high = low + 1.0
        return cls(float(low), float(high))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        out = (np.asarray(frame, dtype=np.float32) - self.low) / (self.high - self.low)
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32, copy=False)


def validate_rois(rois: Sequence[RoiPrompt], frame_shape: tuple[int, int]) -> None:
    """Raise ValueError when there is no ROI or a point lies outside the frame."""
    if not rois:
        raise ValueError("at least one ROI prompt is needed")
    h, w = frame_shape
    for roi in rois:
        pts = np.asarray(roi.points, dtype=float)
        bad = (pts[:, 0] < 0) | (pts[:, 0] > h - 1) | (pts[:, 1] < 0) | (pts[:, 1] > w - 1)
        if np.any(bad):
            r, c = pts[np.argmax(bad)]
            raise ValueError(f"ROI {roi.id}: point ({r:g}, {c:g}) is outside the {h}x{w} frame")


def _make_array(out: Any, name: str, shape: tuple, chunks: tuple, dtype: Any) -> Any:
    """Create (or reuse) array ``name`` in a zarr group or dict-like ``out``."""
    if hasattr(out, "create_array"):  # zarr v3 group
        return out.create_array(
            name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True
        )
    if isinstance(out, MutableMapping) and name in out:
        arr = out[name]
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"out[{name!r}] has shape {tuple(arr.shape)}, expected {shape}")
        return arr
    out[name] = np.zeros(shape, dtype=dtype)
    return out[name]


def _set_attrs(out: Any, attrs: dict) -> None:
    if hasattr(out, "attrs"):
        out.attrs.update(attrs)
    elif isinstance(out, MutableMapping):
        out.setdefault("attrs", {}).update(attrs)


def _roi_mean_speed(speed: np.ndarray, roi_ids: np.ndarray, ids: list[int]) -> np.ndarray:
    means = np.full(len(ids), np.nan, dtype=np.float32)
    for k, roi_id in enumerate(ids):
        inside = roi_ids == roi_id
        if inside.any():
            means[k] = float(speed[inside].mean())
    return means


def estimate_flow(
    video: Any,
    rois: Sequence[RoiPrompt],
    estimator: FlowEstimator,
    *,
    out: Any = None,
    pixel_size: float | None = None,
    fps: float | None = None,
) -> Generator[FlowProgress, None, FlowResult]:
    """Estimate flow over a whole video, streaming one frame at a time.

    Parameters
    ----------
    video : array-like
        ``(T, H, W)`` numpy / zarr / dask array or FrameStack-like object with
        ``raw(i)``; frames are read one by one and normalised to ``[0, 1]``.
    rois : sequence of RoiPrompt
        Point prompts of the vessels, ``(row, col)`` in frame 0.
    estimator : FlowEstimator
        E.g. :class:`~napari_sam2med.flow.estimators.classical.TVL1Estimator`.
    out : zarr.Group or dict-like, optional
        Receives ``flow`` (T-1,H,W,2) float32, ``roi`` (H,W) bool, ``roi_ids`` (H,W)
        int32 (first pair), ``mean_speed_px`` (T-1,n_rois) float32 and, when
        calibrated, ``speed_um_s`` (T-1,H,W) and ``mean_speed_um_s`` float32.
    pixel_size : float, optional
        Pixel size in µm (needs ``fps``).
    fps : float, optional
        Frame rate in frames/s (needs ``pixel_size``).

    Yields
    ------
    FlowProgress
        After each frame pair.

    Returns
    -------
    FlowResult
        Per-ROI mean speed over time.
    """
    n_frames, height, width = video_shape(video)
    calibrated = check_calibration(pixel_size, fps)
    rois = list(rois)
    validate_rois(rois, (height, width))
    ids = [int(r.id) for r in rois]
    n_pairs = n_frames - 1

    arrays: dict[str, Any] = {}
    if out is not None:
        arrays["flow"] = _make_array(
            out, "flow", (n_pairs, height, width, 2), (1, height, width, 2), np.float32
        )
        if calibrated:
            arrays["speed_um_s"] = _make_array(
                out, "speed_um_s", (n_pairs, height, width), (1, height, width), np.float32
            )

    normalize = FrameNormalizer.from_video(video)
    estimator.reset(normalize(_read_frame(video, 0)), rois)
    speeds_px = np.zeros((n_pairs, len(ids)), dtype=np.float32)
    roi_map = np.zeros((height, width), dtype=np.int32)
    for t in range(n_pairs):
        step = estimator.step(normalize(_read_frame(video, t + 1)))
        flow = np.asarray(step.flow, dtype=np.float32)
        if flow.shape != (height, width, 2):
            raise ValueError(f"{estimator.name} returned flow of shape {flow.shape}")
        if t == 0:
            roi_map = np.asarray(step.roi_ids, dtype=np.int32).copy()
        speed = np.hypot(flow[..., 0], flow[..., 1])
        speeds_px[t] = _roi_mean_speed(speed, np.asarray(step.roi_ids), ids)
        if "flow" in arrays:
            arrays["flow"][t] = flow
        if "speed_um_s" in arrays:
            arrays["speed_um_s"][t] = speed_um_per_s(speed, pixel_size, fps)  # type: ignore[arg-type]
        yield FlowProgress(step=step, done=t + 1, total=n_pairs)

    speeds_um = speed_um_per_s(speeds_px, pixel_size, fps) if calibrated else None  # type: ignore[arg-type]
    limit = measurable_limit(estimator, (height, width))
    flagged = implausible_pairs(speeds_px, limit)
    if out is not None:
        _make_array(out, "roi_ids", (height, width), (height, width), np.int32)[...] = roi_map
        _make_array(out, "roi", (height, width), (height, width), bool)[...] = roi_map > 0
        n_cols = max(len(ids), 1)
        _make_array(out, "mean_speed_px", (n_pairs, len(ids)), (n_pairs, n_cols), np.float32)[
            ...
        ] = speeds_px
        if speeds_um is not None:
            _make_array(
                out, "mean_speed_um_s", (n_pairs, len(ids)), (n_pairs, n_cols), np.float32
            )[...] = speeds_um
        _set_attrs(
            out,
            {
                "method": estimator.name,
                "pixel_size_um": pixel_size,
                "fps": fps,
                "roi_ids": ids,
                "prompts": rois_to_json(rois),
                "flow_convention": "(d_row, d_col) px/frame from frame t to t+1",
                "speed_limit_px": limit if np.isfinite(limit) else None,
                "implausible_pairs": flagged,
            },
        )
    return FlowResult(
        roi_ids=ids,
        mean_speed_px=speeds_px,
        mean_speed_um_s=speeds_um,
        roi_map=roi_map,
        method=estimator.name,
        pixel_size=pixel_size,
        fps=fps,
        speed_limit_px=limit,
        implausible_pairs=flagged,
    )


@contextlib.contextmanager
def flow_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Any]:
    """Open a new ``FLOW.zarr`` group for writing, atomically.

    The group is staged in a hidden directory next to ``path``; when the ``with`` block
    exits without an error it is committed with :func:`napari_sam2med.io.writers.atomic_write`
    (which also replaces an existing output only once the new one is complete). On error
    the staging directory is removed, so no partial output is left.

    Parameters
    ----------
    path : path-like
        Final ``.zarr`` directory.
    overwrite : bool
        Replace an existing ``path`` (only after success).
    """
    import zarr

    from ..io.writers import atomic_write

    final = Path(path)
    if final.exists() and not overwrite:
        raise ValueError(f"output already exists: {final}")
    if not final.parent.exists():
        raise FileNotFoundError(f"output folder does not exist: {final.parent}")
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    try:
        group = zarr.open_group(str(staging), mode="w")
        yield group
        atomic_write(final, lambda tmp: os.replace(staging, tmp))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def open_flow_output(path: str | os.PathLike) -> Any:
    """Open a ``FLOW.zarr`` written by :func:`estimate_flow` read-only (zarr group)."""
    import zarr

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"flow output not found: {p}")
    group = zarr.open_group(str(p), mode="r")
    if "flow" not in group:
        raise ValueError(f"{p} holds no 'flow' array")
    return group
