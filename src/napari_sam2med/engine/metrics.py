"""Segmentation metrics with voxel spacing: Dice, IoU, HD95 and surface Dice, per volume and per object.

All functions take a prediction ``pred`` and a ground truth ``gt`` of the same shape (2D or 3D;
non-zero = foreground for the binary metrics) and an optional ``spacing``: one float per axis in
physical units (mm), in the arrays' axis order (``(z, y, x)`` for volumes), or one float for all axes. Distances are in those
units; ``spacing=None`` means 1 per axis (pixels).

Definitions
-----------
* Dice = 2|P∩G| / (|P| + |G|); IoU = |P∩G| / |P∪G|.
* Boundary (surface) of a mask: its voxels with at least one face-neighbour outside the mask
  (mask minus its erosion by the connectivity-1 cross; the array border counts as outside),
  as MONAI's ``get_mask_edges`` does.
* Directed surface distances: for every boundary voxel of one mask, the Euclidean distance (with
  spacing) to the nearest boundary voxel of the other, from ``scipy.ndimage.distance_transform_edt``.
* HD95 = max of the two directed 95th percentiles (``numpy.percentile``, linear interpolation).
* Surface Dice at tolerance τ (Nikolov et al. 2021, "normalised surface Dice"):
  (#boundary voxels of P within τ of ∂G + #boundary voxels of G within τ of ∂P) / (|∂P| + |∂G|),
  counted in boundary voxels (MONAI's ``compute_surface_dice`` without sub-voxel areas).
* Over-propagation rate (SLM-SAM2): predicted voxels on slices (axis 0) where the ground truth is
  empty, divided by the ground-truth voxels.

Empty masks, defined explicitly (so averages never see NaN)
-----------------------------------------------------------
* both empty: Dice = IoU = surface Dice = 1.0, HD95 = 0.0 (perfect agreement on "nothing");
* exactly one empty: Dice = IoU = surface Dice = 0.0, HD95 = ``inf``;
* over-propagation rate with an empty ground truth: 0.0 if nothing is predicted, else ``inf``.

Example
-------
>>> from napari_sam2med.engine.metrics import volume_metrics, object_metrics
>>> row = volume_metrics(pred, gt, spacing=(2.5, 0.8, 0.8), tolerance=1.0)
>>> row["dice"], row["hd95"], row["surface_dice"]
>>> rows = object_metrics(pred_labels, gt_labels, spacing=(2.5, 0.8, 0.8))   # one row per id
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "dice", "iou", "boundary", "surface_distances", "hd95", "surface_dice", "over_propagation_rate",
    "volume_metrics", "object_metrics", "slice_dice", "METRIC_NAMES",
]

#: Keys of :func:`volume_metrics` rows that are scores (the rest are counts and the spacing).
METRIC_NAMES = ("dice", "iou", "hd95", "surface_dice", "over_propagation")


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred) != 0, np.asarray(gt) != 0
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth {g.shape}")
    return p, g


def _spacing(spacing, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    s = tuple(float(v) for v in np.ravel(spacing))
    if len(s) == 1:  # one value: isotropic
        s = s * ndim
    if len(s) != ndim:
        raise ValueError(f"spacing {s} has {len(s)} values for {ndim}-D masks")
    if not all(np.isfinite(v) and v > 0 for v in s):
        raise ValueError(f"spacing must be positive and finite, got {s}")
    return s


def dice(pred, gt) -> float:
    """Dice coefficient of two masks (1.0 when both are empty)."""
    p, g = _pair(pred, gt)
    den = int(np.count_nonzero(p)) + int(np.count_nonzero(g))
    return 1.0 if den == 0 else 2.0 * np.count_nonzero(p & g) / den


def iou(pred, gt) -> float:
    """Intersection over union (Jaccard) of two masks (1.0 when both are empty)."""
    p, g = _pair(pred, gt)
    union = int(np.count_nonzero(p | g))
    return 1.0 if union == 0 else float(np.count_nonzero(p & g)) / union


def boundary(mask) -> np.ndarray:
    """Boundary voxels: the mask minus its erosion by the face-connected cross (border = outside)."""
    m = np.asarray(mask) != 0
    return m & ~ndi.binary_erosion(m, structure=ndi.generate_binary_structure(m.ndim, 1), border_value=0)


def _crop(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to their joint bounding box plus one voxel.

    Exact for boundaries and boundary-to-boundary distances: every boundary voxel lies inside the
    box, and the one-voxel margin keeps the erosion's view of the outside unchanged.
    """
    idx = np.nonzero(p | g)
    sl = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in idx)
    return p[sl], g[sl]


def surface_distances(pred, gt, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Directed boundary distances ``(pred -> gt, gt -> pred)`` in spacing units.

    Both masks must be non-empty (``ValueError`` otherwise).
    """
    p, g = _pair(pred, gt)
    s = _spacing(spacing, p.ndim)
    if not p.any() or not g.any():
        raise ValueError("surface distances need two non-empty masks")
    p, g = _crop(p, g)
    bp, bg = boundary(p), boundary(g)
    to_g = ndi.distance_transform_edt(~bg, sampling=s)
    to_p = ndi.distance_transform_edt(~bp, sampling=s)
    return to_g[bp], to_p[bg]


def hd95(pred, gt, spacing=None) -> float:
    """95th-percentile Hausdorff distance (0.0 both empty, ``inf`` exactly one empty)."""
    p, g = _pair(pred, gt)
    _spacing(spacing, p.ndim)
    if not p.any() and not g.any():
        return 0.0
    if not p.any() or not g.any():
        return float("inf")
    d_pg, d_gp = surface_distances(p, g, spacing)
    return float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))


def surface_dice(pred, gt, tolerance: float = 1.0, spacing=None) -> float:
    """Normalised surface Dice at ``tolerance`` (spacing units, e.g. mm); 1.0 both empty, 0.0 one empty."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    p, g = _pair(pred, gt)
    _spacing(spacing, p.ndim)
    if not p.any() and not g.any():
        return 1.0
    if not p.any() or not g.any():
        return 0.0
    d_pg, d_gp = surface_distances(p, g, spacing)
    return float((np.count_nonzero(d_pg <= tolerance) + np.count_nonzero(d_gp <= tolerance))
                 / (len(d_pg) + len(d_gp)))


def over_propagation_rate(pred, gt) -> float:
    """Predicted voxels on slices (axis 0) with empty ground truth, over the ground-truth voxels."""
    p, g = _pair(pred, gt)
    if p.ndim < 2:
        raise ValueError(f"over-propagation needs a stack of slices, got {p.ndim}-D masks")
    empty = ~g.reshape(len(g), -1).any(axis=1)
    extra = int(np.count_nonzero(p[empty]))
    n_gt = int(np.count_nonzero(g))
    if n_gt == 0:
        return 0.0 if extra == 0 else float("inf")
    return extra / n_gt


def slice_dice(pred, gt) -> np.ndarray:
    """Dice of every slice (axis 0), NaN where both slices are empty (so a mean skips them)."""
    p, g = _pair(pred, gt)
    flat_p, flat_g = p.reshape(len(p), -1), g.reshape(len(g), -1)
    inter = np.count_nonzero(flat_p & flat_g, axis=1).astype(float)
    den = (np.count_nonzero(flat_p, axis=1) + np.count_nonzero(flat_g, axis=1)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2.0 * inter / np.maximum(den, 1), np.nan)


def volume_metrics(pred, gt, spacing=None, tolerance: float = 1.0) -> dict:
    """Every metric of one binary comparison, as a CSV-ready row.

    Parameters
    ----------
    pred, gt : array-like
        Masks of the same shape (non-zero = foreground); 2D or 3D.
    spacing : sequence of float, optional
        Voxel size per axis (mm), in the arrays' axis order.
    tolerance : float
        Surface-Dice tolerance in spacing units.

    Returns
    -------
    dict
        ``dice, iou, hd95, surface_dice, over_propagation`` (the last only for 3D, else NaN),
        ``gt_voxels, pred_voxels, tolerance`` and ``spacing`` (a string, e.g. ``"2.5x0.8x0.8"``).
    """
    p, g = _pair(pred, gt)
    s = _spacing(spacing, p.ndim)
    return {
        "dice": dice(p, g), "iou": iou(p, g), "hd95": hd95(p, g, s),
        "surface_dice": surface_dice(p, g, tolerance, s),
        "over_propagation": over_propagation_rate(p, g) if p.ndim == 3 else float("nan"),
        "gt_voxels": int(np.count_nonzero(g)), "pred_voxels": int(np.count_nonzero(p)),
        "tolerance": float(tolerance), "spacing": "x".join(f"{v:g}" for v in s),
    }


def object_metrics(pred_labels, gt_labels, spacing=None, tolerance: float = 1.0,
                   ids: Sequence[int] | None = None) -> list[dict]:
    """One :func:`volume_metrics` row per object id (``{"object": id, ...}``), ids matched as given.

    Parameters
    ----------
    pred_labels, gt_labels : array-like of int
        Label volumes (0 = background); object ``k`` is ``labels == k`` in both.
    spacing, tolerance
        As in :func:`volume_metrics`.
    ids : sequence of int, optional
        Objects to score; default every non-zero id of either volume (an id only in the
        prediction scores Dice 0, a missed id too).
    """
    pl, gl = np.asarray(pred_labels), np.asarray(gt_labels)
    if pl.shape != gl.shape:
        raise ValueError(f"prediction shape {pl.shape} differs from ground truth {gl.shape}")
    if ids is None:
        ids = sorted((set(np.unique(gl).tolist()) | set(np.unique(pl).tolist())) - {0})
    return [{"object": int(k), **volume_metrics(pl == k, gl == k, spacing, tolerance)} for k in ids]
