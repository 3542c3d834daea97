"""Flow accuracy metrics: end-point error and k-pixel accuracy inside a mask."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["endpoint_error", "flow_metrics", "FlowMetrics", "MetricAccumulator"]

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
