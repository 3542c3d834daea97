"""Intensity normalisation of single slices to float32 in [0, 1].

uint8 data maps as ``x / 255`` (exactly what SAM2's own preprocessing does);
every other dtype maps a contrast window ``(lo, hi)`` linearly onto 0..1 and
clips. The default window is a robust percentile range estimated from a small,
evenly spaced subsample of slices so that opening a stack never reads it whole.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

NAN_POLICIES = ("raise", "zero")

#: Most slices read when estimating a default window.
MAX_WINDOW_SLICES = 16
#: Most pixels per slice used for the percentile estimate (strided subsample).
MAX_WINDOW_PIXELS_PER_SLICE = 262_144
DEFAULT_PERCENTILES = (0.5, 99.5)

_UINT8_SCALE = np.float32(255.0)


def check_window(window: Sequence[float]) -> tuple[float, float]:
    """Validate a contrast window and return it as a ``(lo, hi)`` float tuple.

    Parameters
    ----------
    window : sequence of two numbers
        Intensity mapped to 0 and intensity mapped to 1.

    Returns
    -------
    tuple of float
        ``(lo, hi)`` with ``lo < hi``, both finite.
    """
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be a pair (lo, hi) of numbers, got {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(f"window must be finite with lo < hi, got ({lo}, {hi})")
    return lo, hi


def sample_indices(n: int, max_slices: int = MAX_WINDOW_SLICES) -> np.ndarray:
    """Return at most ``max_slices`` evenly spaced slice indices in ``[0, n)``."""
    if n <= 0:
        raise ValueError(f"cannot sample slices from an empty stack (n={n})")
    count = min(n, max_slices)
    return np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))


def robust_window(
    read_slice: Callable[[int], np.ndarray],
    n: int,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    max_slices: int = MAX_WINDOW_SLICES,
) -> tuple[float, float]:
    """Estimate a contrast window from a bounded subsample of slices.

    Parameters
    ----------
    read_slice : callable
        ``read_slice(i)`` returns slice ``i`` as an array (any trailing shape).
    n : int
        Number of slices in the stack.
    percentiles : tuple of float
        Lower and upper percentiles of the finite sampled values.
    max_slices : int
        Most slices read.

    Returns
    -------
    tuple of float
        ``(lo, hi)`` with ``lo < hi``. Constant data gives ``(v, v + 1)``;
        data without any finite value gives ``(0, 1)``.
    """
    samples = []
    for i in sample_indices(n, max_slices):
        values = np.asarray(read_slice(int(i)))
        flat = values.reshape(-1)
        step = max(1, flat.size // MAX_WINDOW_PIXELS_PER_SLICE)
        flat = flat[::step].astype(np.float64, copy=False)
        samples.append(flat[np.isfinite(flat)])
    values = np.concatenate(samples)
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if hi <= lo:
        # Nearly constant data: fall back to the full range, then to a unit window.
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            hi = lo + 1.0
    return lo, hi


def normalize_slice(
    values: np.ndarray,
    window: tuple[float, float] | None,
    *,
    nan_policy: str = "raise",
) -> np.ndarray:
    """Map one slice to float32 in [0, 1].

    Parameters
    ----------
    values : np.ndarray
        Raw slice of any real dtype.
    window : tuple of float or None
        ``(lo, hi)`` contrast window. ``None`` is allowed only for uint8 data,
        which then maps exactly as ``x / 255``.
    nan_policy : {"raise", "zero"}
        What NaN does: raise ``ValueError`` or map to ``lo`` (i.e. 0).

    Returns
    -------
    np.ndarray
        float32 array of the same shape, values in [0, 1].
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    values = np.asarray(values)
    if window is None:
        if values.dtype != np.uint8:
            raise ValueError(f"a window is required for dtype {values.dtype}")
        return values.astype(np.float32) / _UINT8_SCALE
    lo, hi = window
    if values.dtype.kind == "f":
        nan_mask = np.isnan(values)
        if nan_mask.any():
            if nan_policy == "raise":
                raise ValueError(
                    "slice contains NaN values; clean the data or use nan_policy='zero'"
                )
            values = np.where(nan_mask, lo, values)
    # float64 for the subtraction keeps large integers (int32/uint32) exact enough.
    mapped = (values.astype(np.float64) - lo) / (hi - lo)
    return np.clip(mapped, 0.0, 1.0).astype(np.float32)
