"""Shared types of the flow feature: ROI prompts, per-pair flow steps, estimator protocol.

Conventions: frames are float32 ``(H, W)`` in ``[0, 1]``; flow arrays are float32
``(..., H, W, 2)`` holding ``(d_row, d_col)`` in pixels per frame from frame ``t`` to
``t + 1``, i.e. ``frame_{t+1}(p + d) ~= frame_t(p)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["RoiPrompt", "FlowStep", "FlowEstimator", "load_rois_json", "rois_to_json"]


@dataclass(frozen=True)
class RoiPrompt:
    """Point prompts of one vessel ROI.

    Attributes
    ----------
    id : int
        ROI id (> 0); written into ``roi_ids`` maps.
    points : np.ndarray
        ``(N, 2)`` float ``(row, col)`` positions.
    labels : np.ndarray
        ``(N,)`` int, 1 = positive (inside the vessel), 0 = negative.
    """

    id: int
    points: np.ndarray
    labels: np.ndarray


@dataclass
class FlowStep:
    """Flow of one frame pair.

    Attributes
    ----------
    index : int
        Pair index ``t`` (flow from frame ``t`` to ``t + 1``).
    flow : np.ndarray
        ``(H, W, 2)`` float32 ``(d_row, d_col)`` in px/frame.
    roi_ids : np.ndarray
        ``(H, W)`` int32, 0 outside every ROI, else the ROI id.
    """

    index: int
    flow: np.ndarray
    roi_ids: np.ndarray


@runtime_checkable
class FlowEstimator(Protocol):
    """Streaming flow estimator: ``reset`` with the first frame, then ``step`` per frame."""

    name: str

    def reset(self, first_frame: np.ndarray, rois: Sequence[RoiPrompt]) -> None:
        """Start a new video with its first frame and the ROI prompts."""
        ...

    def step(self, next_frame: np.ndarray) -> FlowStep:
        """Return the flow from the previous frame to ``next_frame``."""
        ...


def _parse_roi(entry: Any, k: int) -> RoiPrompt:
    if not isinstance(entry, dict):
        raise ValueError(f"rois[{k}] must be an object with 'id', 'points', 'labels'")
    for key in ("id", "points"):
        if key not in entry:
            raise ValueError(f"rois[{k}] has no '{key}'")
    roi_id = entry["id"]
    if isinstance(roi_id, bool) or not isinstance(roi_id, (int, np.integer)) or roi_id < 1:
        raise ValueError(f"rois[{k}].id must be a positive integer, got {roi_id!r}")
    try:
        points = np.asarray(entry["points"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"rois[{k}].points must be a list of [row, col] numbers") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"rois[{k}].points must be a non-empty list of [row, col] pairs")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"rois[{k}].points must be finite numbers")
    labels_raw = entry.get("labels", [1] * len(points))
    try:
        labels = np.asarray(labels_raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"rois[{k}].labels must be a list of 0/1") from None
    if labels.shape != (len(points),):
        raise ValueError(
            f"rois[{k}].labels has {labels.size} entries for {len(points)} points"
        )
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError(f"rois[{k}].labels must be 0 (negative) or 1 (positive)")
    if not np.any(labels == 1):
        raise ValueError(f"rois[{k}] needs at least one positive point")
    return RoiPrompt(id=int(roi_id), points=points, labels=labels.astype(np.int64))


def load_rois_json(path_or_dict: str | Path | dict) -> list[RoiPrompt]:
    """Read ROI prompts from a JSON file or an already-parsed dict.

    Parameters
    ----------
    path_or_dict : str, Path or dict
        ``{"rois": [{"id": 1, "points": [[r, c], ...], "labels": [1, 0, ...]}, ...]}``.
        ``labels`` defaults to all positive.

    Returns
    -------
    list of RoiPrompt
        One per ROI, in file order.

    Raises
    ------
    FileNotFoundError
        If a path is given that does not exist.
    ValueError
        If the JSON is malformed or the content invalid (one-line message).
    """
    if isinstance(path_or_dict, dict):
        data = path_or_dict
    else:
        path = Path(path_or_dict)
        if not path.is_file():
            raise FileNotFoundError(f"points file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"points file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rois"), list):
        raise ValueError("points JSON must be an object with a 'rois' list")
    if not data["rois"]:
        raise ValueError("points JSON holds no ROI")
    rois = [_parse_roi(entry, k) for k, entry in enumerate(data["rois"])]
    ids = [r.id for r in rois]
    if len(set(ids)) != len(ids):
        raise ValueError(f"ROI ids must be unique, got {ids}")
    return rois


def rois_to_json(rois: Sequence[RoiPrompt]) -> dict:
    """Inverse of :func:`load_rois_json` (returns the dict form)."""
    return {
        "rois": [
            {
                "id": int(r.id),
                "points": np.asarray(r.points, dtype=float).tolist(),
                "labels": np.asarray(r.labels, dtype=int).tolist(),
            }
            for r in rois
        ]
    }
