"""Point prompts for synthetic videos: positives on a vessel's centre line, negatives in the background."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

if TYPE_CHECKING:  # pragma: no cover
    from .generator import SyntheticVideo

__all__ = ["prompts_for"]


def prompts_for(video: SyntheticVideo, ids=None, n_pos: int = 2, n_neg: int = 1, seed: int = 0):
    """Point prompts for vessels of a synthetic video.

    Positive points lie on the vessel's centre line (where that vessel owns the pixel);
    negative points lie in background at least 3 px from every vessel.

    Parameters
    ----------
    video : SyntheticVideo
        The video.
    ids : sequence of int, optional
        Vessel ids to prompt (default: every id present in ``vessel_ids``).
    n_pos, n_neg : int
        Positive / negative points per ROI.
    seed : int
        Seed of the point choice.

    Returns
    -------
    list of RoiPrompt
        One per id, the ROI id equal to the vessel id.
    """
    from ..types import RoiPrompt

    rng = np.random.default_rng(seed)
    present = [int(i) for i in np.unique(video.vessel_ids) if i > 0]
    ids = present if ids is None else [int(i) for i in ids]
    missing = [i for i in ids if i not in present]
    if missing:
        raise ValueError(f"vessel ids {missing} are not in the video (present: {present})")
    h, w = video.vessel_ids.shape
    far = ndi.distance_transform_edt(video.vessel_ids == 0) > 3
    bg = np.argwhere(far) if far.any() else np.argwhere(video.vessel_ids == 0)
    rois = []
    for vid in ids:
        pos_pool = np.zeros((0, 2))
        if vid - 1 < len(video.centerlines):
            line = np.round(video.centerlines[vid - 1]).astype(int)
            ok = (line[:, 0] >= 0) & (line[:, 0] < h) & (line[:, 1] >= 0) & (line[:, 1] < w)
            line = line[ok]
            pos_pool = line[video.vessel_ids[line[:, 0], line[:, 1]] == vid]
        if len(pos_pool) == 0:
            pos_pool = np.argwhere(video.vessel_ids == vid)
        pos = pos_pool[rng.choice(len(pos_pool), n_pos, replace=len(pos_pool) < n_pos)]
        neg = bg[rng.choice(len(bg), n_neg, replace=len(bg) < n_neg)] if n_neg and len(bg) else np.zeros((0, 2))
        points = np.concatenate([pos, neg]).astype(np.float64)
        labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.int64)
        rois.append(RoiPrompt(id=vid, points=points, labels=labels))
    return rois
