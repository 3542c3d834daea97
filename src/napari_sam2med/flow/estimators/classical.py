"""Classical optical-flow baselines (scikit-image TV-L1 and iterative Lucas-Kanade).

Both take no prompts, so their ROI comes from :func:`classical_roi`: a fallback that
thresholds a ridge (vesselness) map of the first frame, weighted by the temporal
contrast of the first frame pair (moving cells), and keeps the connected components
touched by positive points. scikit-image's ``optical_flow_*(reference,
moving)`` returns ``v`` with ``moving(p + v) ~= reference(p)``; with ``reference =
frame_t`` and ``moving = frame_{t+1}`` that is exactly our ``(d_row, d_col)``
convention, so only the axis order changes (checked in ``tests/flow/test_baselines.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import sato
from skimage.registration import optical_flow_ilk, optical_flow_tvl1

from ..types import FlowStep, RoiPrompt

__all__ = ["classical_roi", "TVL1Estimator", "ILKEstimator", "RidgeRoiConfig"]


@dataclass(frozen=True)
class RidgeRoiConfig:
    """Knobs of the classical ROI fallback.

    Attributes
    ----------
    sigmas : tuple of float
        Ridge scales (px) for ``skimage.filters.sato``; cover the vessel half-widths.
    rel_threshold : float
        A pixel is "vessel" when its ridge response exceeds this fraction of the
        median response at the ROI's positive points.
    contrast_sigma : float
        Smoothing (px) of the temporal-contrast map ``|frame_1 - frame_0|``.
    min_radius : int
        Radius of the disk used around a positive point that has no ridge response,
        and of the hole cut around a negative point that lies in a kept component.
    """

    sigmas: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    rel_threshold: float = 0.5
    contrast_sigma: float = 2.0
    min_radius: int = 3


def _disk(shape: tuple[int, int], center: np.ndarray, radius: float) -> np.ndarray:
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius**2


def _point_index(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    idx = np.rint(np.asarray(points, dtype=float)).astype(int)
    idx[:, 0] = np.clip(idx[:, 0], 0, shape[0] - 1)
    idx[:, 1] = np.clip(idx[:, 1], 0, shape[1] - 1)
    return idx


def classical_roi(
    frame: np.ndarray,
    rois: Sequence[RoiPrompt],
    config: RidgeRoiConfig | None = None,
    next_frame: np.ndarray | None = None,
) -> np.ndarray:
    """Segment ROIs from point prompts without a learned model (fallback).

    For each ROI, the ridge polarity (dark or bright vessels) that responds more at
    its positive points is chosen; when ``next_frame`` is given the response is
    multiplied by the smoothed temporal contrast ``|next_frame - frame|`` (flowing
    cells change, static tissue does not); the result is thresholded relative to the
    response at those points; components containing a positive point are kept,
    components containing only negative points are dropped, and a negative point
    inside a kept component cuts a small disk out of it.

    Parameters
    ----------
    frame : np.ndarray
        ``(H, W)`` float image (first frame).
    rois : sequence of RoiPrompt
        Point prompts, ``(row, col)``.
    config : RidgeRoiConfig, optional
        Thresholding knobs.
    next_frame : np.ndarray, optional
        ``(H, W)`` second frame for the temporal-contrast weighting.

    Returns
    -------
    np.ndarray
        ``(H, W)`` int32, 0 = background, else the ROI id (later ROIs do not
        overwrite earlier ones).
    """
    cfg = config or RidgeRoiConfig()
    frame = np.asarray(frame, dtype=np.float32)
    if frame.ndim != 2:
        raise ValueError(f"classical_roi expects an (H, W) frame, got shape {frame.shape}")
    shape = frame.shape
    responses = {
        dark: sato(frame, sigmas=cfg.sigmas, black_ridges=dark, mode="reflect")
        for dark in (True, False)
    }
    if next_frame is not None:
        diff = np.abs(np.asarray(next_frame, dtype=np.float32) - frame)
        contrast = ndi.gaussian_filter(diff, cfg.contrast_sigma)
        contrast /= max(float(contrast.max()), 1e-12)
        responses = {dark: resp * contrast for dark, resp in responses.items()}
    roi_ids = np.zeros(shape, dtype=np.int32)
    for roi in rois:
        labels = np.asarray(roi.labels)
        idx = _point_index(roi.points, shape)
        pos, neg = idx[labels == 1], idx[labels != 1]
        if len(pos) == 0:
            continue
        resp = max(responses.values(), key=lambda r: float(np.median(r[pos[:, 0], pos[:, 1]])))
        level = float(np.median(resp[pos[:, 0], pos[:, 1]]))
        mask = np.zeros(shape, dtype=bool)
        if level > 0:
            comps, _ = ndi.label(resp > cfg.rel_threshold * level)
            keep = {int(comps[r, c]) for r, c in pos} - {0}
            drop = {int(comps[r, c]) for r, c in neg} - {0} - keep
            mask = np.isin(comps, sorted(keep)) & ~np.isin(comps, sorted(drop))
        for r, c in pos:
            if not mask[r, c]:  # no ridge here: fall back to a small disk
                mask |= _disk(shape, np.array([r, c]), cfg.min_radius)
        for r, c in neg:
            if mask[r, c]:
                mask &= ~_disk(shape, np.array([r, c]), cfg.min_radius)
        roi_ids[mask & (roi_ids == 0)] = roi.id
    return roi_ids


@dataclass
class _PairwiseEstimator:
    """Shared streaming logic: keep the previous frame, flow each new pair."""

    name: str = "pairwise"
    roi_config: RidgeRoiConfig = field(default_factory=RidgeRoiConfig)
    _prev: np.ndarray | None = field(default=None, init=False, repr=False)
    _roi_ids: np.ndarray | None = field(default=None, init=False, repr=False)
    _rois: list = field(default_factory=list, init=False, repr=False)
    _index: int = field(default=0, init=False, repr=False)

    def reset(self, first_frame: np.ndarray, rois: Sequence[RoiPrompt]) -> None:
        """Start a new video; the ROI is segmented at the first step (needs two frames)."""
        frame = np.asarray(first_frame, dtype=np.float32)
        if frame.ndim != 2:
            raise ValueError(f"{self.name}: frames must be (H, W), got shape {frame.shape}")
        self._prev = frame
        self._rois = list(rois)
        self._roi_ids = None
        self._index = 0

    def step(self, next_frame: np.ndarray) -> FlowStep:
        """Flow from the previous frame to ``next_frame`` (ROI fixed from the first pair)."""
        if self._prev is None:
            raise ValueError(f"{self.name}: call reset() before step()")
        frame = np.asarray(next_frame, dtype=np.float32)
        if frame.shape != self._prev.shape:
            raise ValueError(
                f"{self.name}: frame shape {frame.shape} != first frame {self._prev.shape}"
            )
        if self._roi_ids is None:
            self._roi_ids = classical_roi(self._prev, self._rois, self.roi_config, frame)
        vec = self._flow(self._prev, frame)  # (2, H, W) (d_row, d_col)
        flow = np.ascontiguousarray(np.moveaxis(vec, 0, -1), dtype=np.float32)
        result = FlowStep(index=self._index, flow=flow, roi_ids=self._roi_ids.copy())
        self._prev = frame
        self._index += 1
        return result

    def _flow(self, reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class TVL1Estimator(_PairwiseEstimator):
    """TV-L1 optical flow (``skimage.registration.optical_flow_tvl1``).

    Attributes mirror the scikit-image keyword arguments.
    """

    name: str = "tvl1"
    attachment: float = 15.0
    tightness: float = 0.3
    num_warp: int = 5
    num_iter: int = 10
    tol: float = 1e-4
    prefilter: bool = False

    def _flow(self, reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
        return optical_flow_tvl1(
            reference,
            moving,
            attachment=self.attachment,
            tightness=self.tightness,
            num_warp=self.num_warp,
            num_iter=self.num_iter,
            tol=self.tol,
            prefilter=self.prefilter,
            dtype=np.float32,
        )


@dataclass
class ILKEstimator(_PairwiseEstimator):
    """Iterative Lucas-Kanade optical flow (``skimage.registration.optical_flow_ilk``)."""

    name: str = "ilk"
    radius: int = 7
    num_warp: int = 10
    gaussian: bool = False
    prefilter: bool = False

    def _flow(self, reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
        return optical_flow_ilk(
            reference,
            moving,
            radius=self.radius,
            num_warp=self.num_warp,
            gaussian=self.gaussian,
            prefilter=self.prefilter,
            dtype=np.float32,
        )
