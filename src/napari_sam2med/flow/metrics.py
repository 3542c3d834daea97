"""Flow accuracy metrics (the one place they are defined).

* end-point error (EPE) and k-pixel accuracy inside a mask (:func:`flow_metrics`,
  :class:`MetricAccumulator`);
* two ROI overlap figures with different meanings, named for what they are:
  :func:`roi_iou_per_vessel` (IoU of each prompted vessel's ROI with that vessel, averaged)
  and :class:`UnionIoU` (IoU of the union of all predicted ROIs with the union of the
  vessels, pooled over frames).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["endpoint_error", "flow_metrics", "FlowMetrics", "MetricAccumulator", "roi_iou_per_vessel", "UnionIoU"]

DEFAULT_THRESHOLDS = (1.0, 3.0, 5.0)


def endpoint_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel end-point error ``||pred - gt||_2``.

    Parameters
    ----------
    pred, gt : np.ndarray
        ``(..., 2)`` flow fields of the same shape.

    Returns
    -------
    np.ndarray
        ``(...)`` float64 errors.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.shape[-1] != 2:
        raise ValueError(f"flow shapes must match and end in 2, got {pred.shape} and {gt.shape}")
    return np.hypot(pred[..., 0] - gt[..., 0], pred[..., 1] - gt[..., 1])


@dataclass(frozen=True)
class FlowMetrics:
    """Summary of flow accuracy inside a mask.

    Attributes
    ----------
    epe : float
        Mean end-point error in px (NaN when the mask is empty).
    acc : dict
        ``{k: fraction of pixels with EPE < k}`` for each threshold ``k``.
    n_pixels : int
        Number of pixels evaluated.
    """

    epe: float
    acc: dict[float, float]
    n_pixels: int

    def as_dict(self) -> dict:
        """``{"epe", "acc_1px", "acc_3px", "acc_5px", "n_pixels"}`` (JSON-ready)."""
        out = {"epe": float(self.epe)}
        out.update({f"acc_{k:g}px": float(v) for k, v in self.acc.items()})
        out["n_pixels"] = int(self.n_pixels)
        return out


def flow_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray | None = None,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
) -> FlowMetrics:
    """EPE and k-px accuracy of ``pred`` against ``gt`` inside ``mask``.

    Parameters
    ----------
    pred, gt : np.ndarray
        ``(..., H, W, 2)`` flows.
    mask : np.ndarray, optional
        Boolean mask broadcastable to ``pred.shape[:-1]``; default all pixels.
    thresholds : tuple of float
        Accuracy thresholds in px (strict ``EPE < k``).

    Returns
    -------
    FlowMetrics
    """
    acc = MetricAccumulator(thresholds)
    acc.update(pred, gt, mask)
    return acc.result()


@dataclass
class MetricAccumulator:
    """Streaming version of :func:`flow_metrics` (pixel-weighted over updates)."""

    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    _sum: float = field(default=0.0, init=False)
    _n: int = field(default=0, init=False)
    _hits: dict = field(default_factory=dict, init=False)

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add one batch of pixels (e.g. one frame pair)."""
        err = endpoint_error(pred, gt)
        if mask is not None:
            mask = np.broadcast_to(np.asarray(mask, dtype=bool), err.shape)
            err = err[mask]
        else:
            err = err.ravel()
        self._sum += float(err.sum())
        self._n += int(err.size)
        for k in self.thresholds:
            self._hits[k] = self._hits.get(k, 0) + int(np.count_nonzero(err < k))

    def result(self) -> FlowMetrics:
        """Current summary."""
        if self._n == 0:
            return FlowMetrics(float("nan"), {k: float("nan") for k in self.thresholds}, 0)
        acc = {k: self._hits.get(k, 0) / self._n for k in self.thresholds}
        return FlowMetrics(self._sum / self._n, acc, self._n)


def roi_iou_per_vessel(pred_ids: np.ndarray, gt_ids: np.ndarray) -> list[float]:
    """IoU of predicted ROI ``k`` with ground-truth vessel ``k``, for each vessel id in ``gt_ids``.

    Parameters
    ----------
    pred_ids, gt_ids : np.ndarray
        ``(H, W)`` int id maps (0 = background); ROI ids equal vessel ids.

    Returns
    -------
    list of float
        One IoU per vessel present in ``gt_ids``.
    """
    ious = []
    for vid in np.unique(gt_ids[gt_ids > 0]):
        a, b = pred_ids == vid, gt_ids == vid
        ious.append(float((a & b).sum() / max((a | b).sum(), 1)))
    return ious


@dataclass
class UnionIoU:
    """IoU of the union of predicted ROIs with the union of vessels, pooled over updates."""

    inter: int = 0
    union: int = 0

    def update(self, pred_ids: np.ndarray, gt_mask: np.ndarray) -> None:
        """Add one frame pair."""
        pred, gt = np.asarray(pred_ids) > 0, np.asarray(gt_mask, dtype=bool)
        self.inter += int(np.count_nonzero(pred & gt))
        self.union += int(np.count_nonzero(pred | gt))

    def result(self) -> float:
        """Pooled IoU (NaN when nothing was seen)."""
        return self.inter / self.union if self.union else float("nan")
