"""What a flow estimator can measure, and a warning naming the frames where a ROI exceeds it.

A speed beyond the estimator's reach (SAM2Flow: the correlation pyramid's look-up radius)
or beyond a quarter of the frame per frame cannot be a measurement: cells crossing a
quarter of the field of view between two frames are not trackable by any of our methods.
The runner records such pairs (:attr:`FlowResult.implausible_pairs`, zarr attribute
``implausible_pairs``); the CLI and the Flow widget show :func:`implausible_warning`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["measurable_limit", "implausible_pairs", "format_pairs", "implausible_warning"]

FRAME_FRACTION = 0.25


def measurable_limit(estimator: Any, frame_shape: tuple[int, int]) -> float:
    """Largest speed (px/frame) ``estimator`` can report on frames of ``frame_shape``.

    The smaller of the estimator's ``max_displacement`` attribute (if it has one) and a
    quarter of the shorter frame side.
    """
    reach = float(getattr(estimator, "max_displacement", math.inf))
    return min(reach, FRAME_FRACTION * min(frame_shape))


def implausible_pairs(mean_speed_px: np.ndarray, limit: float) -> list[int]:
    """Pair indices ``t`` where any ROI's mean speed exceeds ``limit`` (NaN = empty ROI, ignored)."""
    speeds = np.nan_to_num(np.asarray(mean_speed_px, dtype=np.float64), nan=0.0)
    if speeds.ndim == 1:
        speeds = speeds[:, None]
    return [int(t) for t in np.flatnonzero((speeds > limit).any(axis=1))]


def format_pairs(pairs: Sequence[int], max_runs: int = 8) -> str:
    """``[3, 4, 5, 9]`` -> ``"frames 3-6, 9-10"`` (pair ``t`` spans frames ``t`` to ``t + 1``)."""
    runs: list[list[int]] = []
    for t in sorted(pairs):
        if runs and t == runs[-1][1] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    parts = [f"{a}-{b + 1}" for a, b in runs[:max_runs]]
    more = f" and {len(runs) - max_runs} more ranges" if len(runs) > max_runs else ""
    return "frames " + ", ".join(parts) + more


def implausible_warning(result: Any) -> str | None:
    """One-line warning for a ``FlowResult`` with implausible pairs, else None."""
    pairs = list(getattr(result, "implausible_pairs", []) or [])
    if not pairs:
        return None
    return (
        f"ROI speed exceeds what {result.method} can measure ({result.speed_limit_px:.1f} px/frame) in "
        f"{len(pairs)} of {len(result.mean_speed_px)} frame pairs ({format_pairs(pairs)}); "
        "speeds there are not measurements"
    )
