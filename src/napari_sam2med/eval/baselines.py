"""Classical baselines that a promptable model must beat, built on scikit-image and SciPy.

Box-prompted volumes (issue 18's CT-lesion baselines), all from the ground-truth box on the key
slice (where the object is largest; inclusive pixel indices, as :mod:`.protocols`):

* :func:`box_as_mask` — the box itself, on the key slice only;
* :func:`box_extruded` — the box copied to every slice (or only to ``z_range``, e.g. the object's
  true extent, an upper bound that uses ground truth the user does not have);
* :func:`watershed_carried` — a marker watershed on the smoothed gradient inside the box on the key
  slice, then carried slice to slice: each slice starts from the previous mask (eroded: object marker;
  outside its dilation: background marker) and the carry stops when the region's intensity leaves the
  key slice's range, or it shrinks away.

OCTA (:func:`faz_baseline`): the foveal avascular zone as the dark, vessel-free component around the
darkest smooth point near the centre of an en-face OCTA projection (smoothing, threshold, morphology).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .protocols import box_of, key_slice

__all__ = ["box_as_mask", "box_extruded", "watershed_in_box", "watershed_carried", "CarryConfig",
           "faz_baseline", "box_baselines", "box_baseline_rows", "BOX_BASELINES"]

#: Names of the box baselines, in report order.
BOX_BASELINES = ("box_as_mask", "box_extruded", "box_extruded_true_extent", "watershed_carried")


def _box_mask(shape: tuple[int, int], box) -> np.ndarray:
    r0, c0, r1, c1 = (int(v) for v in box)
    m = np.zeros(shape, bool)
    m[max(r0, 0):r1 + 1, max(c0, 0):c1 + 1] = True
    return m


def box_as_mask(shape: tuple[int, int, int], box, z: int) -> np.ndarray:
    """bool (Z, Y, X): the (inclusive) box filled on slice ``z`` only."""
    out = np.zeros(shape, bool)
    out[z] = _box_mask(shape[1:], box)
    return out


def box_extruded(shape: tuple[int, int, int], box, z_range: tuple[int, int] | None = None) -> np.ndarray:
    """bool (Z, Y, X): the box on every slice, or on slices ``z0..z1`` (inclusive) only."""
    out = np.zeros(shape, bool)
    z0, z1 = (0, shape[0] - 1) if z_range is None else z_range
    out[z0:z1 + 1] = _box_mask(shape[1:], box)
    return out


@dataclass(frozen=True)
class CarryConfig:
    """Watershed baseline settings (pixels and intensity units of the image)."""

    sigma: float = 1.0  # gradient smoothing
    margin: float = 0.25  # crop margin around the box / previous mask, fraction of its size (>= 4 px)
    max_shift_std: float = 2.5  # stop when the region's mean leaves key mean +- this x key std
    min_keep: float = 0.2  # stop when the region is smaller than this x the previous one
    min_pixels: int = 6


def _gradient(img: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.filters import sobel

    return sobel(ndi.gaussian_filter(img.astype(np.float32), sigma))


def _crop_of(mask: np.ndarray, margin: float, shape) -> tuple[slice, slice]:
    rows, cols = np.nonzero(mask)
    pad = max(4, int(margin * max(np.ptp(rows) + 1, np.ptp(cols) + 1)))
    return (slice(max(rows.min() - pad, 0), min(rows.max() + pad + 1, shape[0])),
            slice(max(cols.min() - pad, 0), min(cols.max() + pad + 1, shape[1])))


def watershed_in_box(img2d: np.ndarray, box, cfg: CarryConfig = CarryConfig()) -> np.ndarray:
    """bool (Y, X): marker watershed inside the box (object marker: the box's central quarter)."""
    from skimage.segmentation import watershed

    boxm = _box_mask(img2d.shape, box)
    sl = _crop_of(boxm, cfg.margin, img2d.shape)
    r0, c0, r1, c1 = (int(v) for v in box)
    markers = np.zeros(img2d.shape, np.int32)
    markers[~boxm] = 1
    hr, hc = max((r1 - r0) // 4, 0), max((c1 - c0) // 4, 0)
    cr, cc = (r0 + r1) // 2, (c0 + c1) // 2
    markers[cr - hr:cr + hr + 1, cc - hc:cc + hc + 1] = 2
    seg = watershed(_gradient(img2d[sl], cfg.sigma), markers[sl]) == 2
    out = np.zeros(img2d.shape, bool)
    out[sl] = ndi.binary_fill_holes(seg) & boxm[sl]
    return out


def _carry_step(img2d: np.ndarray, prev: np.ndarray, cfg: CarryConfig) -> np.ndarray:
    from skimage.segmentation import watershed

    sl = _crop_of(prev, cfg.margin, img2d.shape)
    p = prev[sl]
    size = max(np.ptp(np.nonzero(p)[0]) + 1, np.ptp(np.nonzero(p)[1]) + 1)
    grow = max(2, int(round(cfg.margin * size)))
    inner = ndi.binary_erosion(p, iterations=max(1, size // 6))
    if not inner.any():
        inner = np.zeros_like(p)
        inner[tuple(int(round(c)) for c in ndi.center_of_mass(p))] = True
    markers = np.where(~ndi.binary_dilation(p, iterations=grow), 1, 0).astype(np.int32)
    markers[inner] = 2
    seg = ndi.binary_fill_holes(watershed(_gradient(img2d[sl], cfg.sigma), markers) == 2)
    out = np.zeros(img2d.shape, bool)
    out[sl] = seg
    return out


def watershed_carried(image: np.ndarray, box, z: int, cfg: CarryConfig = CarryConfig()) -> np.ndarray:
    """bool (Z, Y, X): :func:`watershed_in_box` on slice ``z``, carried both ways (module docstring)."""
    image = np.asarray(image)
    out = np.zeros(image.shape[:3], bool)
    out[z] = watershed_in_box(image[z], box, cfg)
    if out[z].sum() < cfg.min_pixels:
        return out
    vals = image[z][out[z]].astype(np.float64)
    mean, std = vals.mean(), max(vals.std(), 1.0)
    for step in (1, -1):
        prev = out[z]
        k = z + step
        while 0 <= k < image.shape[0]:
            cur = _carry_step(image[k], prev, cfg)
            n = int(cur.sum())
            if n < max(cfg.min_pixels, cfg.min_keep * prev.sum()):
                break
            if abs(image[k][cur].astype(np.float64).mean() - mean) > cfg.max_shift_std * std:
                break
            out[k] = cur
            prev = cur
            k += step
    return out


def box_baselines(image: np.ndarray, gt: np.ndarray) -> tuple[int, dict[str, np.ndarray]]:
    """Every box baseline of one object: ``(key slice, {name: bool (Z, Y, X) prediction})``.

    Names: ``box_as_mask``, ``box_extruded``, ``box_extruded_true_extent``, ``watershed_carried``.
    """
    gt = np.asarray(gt, bool)
    z = key_slice(gt)
    box = box_of(gt[z])
    present = np.flatnonzero(gt.any(axis=(1, 2)))
    return z, {
        "box_as_mask": box_as_mask(gt.shape, box, z),
        "box_extruded": box_extruded(gt.shape, box),
        "box_extruded_true_extent": box_extruded(gt.shape, box, (int(present[0]), int(present[-1]))),
        "watershed_carried": watershed_carried(image, box, z),
    }


def box_baseline_rows(name: str, image: np.ndarray, gt: np.ndarray, spacing=None, tolerance: float = 2.0) -> list[dict]:
    """Score every box baseline of one volume's foreground: one row per baseline.

    Each row: ``volume, baseline, key_slice, slice_dice`` (2D, on the prompted slice) and the
    :func:`~napari_sam2med.engine.metrics.volume_metrics` of the 3D prediction.
    """
    from ..engine.metrics import dice, volume_metrics

    gt = np.asarray(gt) > 0
    z, preds = box_baselines(image, gt)
    return [{"volume": name, "baseline": k, "key_slice": z, "slice_dice": dice(p[z], gt[z]),
             **volume_metrics(p, gt, spacing, tolerance)} for k, p in preds.items()]


def faz_baseline(projection: np.ndarray, alpha: float = 0.35, sigma: float = 0.005, seed_sigma: float = 0.03,
                 centre_fraction: float = 0.5, radius: float = 0.01) -> np.ndarray:
    """Foveal avascular zone of an en-face OCTA projection, without a model.

    The FAZ is the darkest smooth region near the centre: the seed is the minimum of the
    projection smoothed at ``seed_sigma`` (fraction of the side) inside the central window
    (``centre_fraction`` of the side); the FAZ is the dark component holding the seed after
    smoothing at ``sigma``, thresholding at ``seed + alpha * (median - seed)``, an opening and a
    closing with a disk of ``radius`` (fraction of the side), holes filled.

    The defaults were picked on OCTA-500 cases 10301-10303 and 10001-10003 (``ILM_OPL``
    projections) among alpha 0.3-0.6 and sigma 0.005-0.012: an optimistic baseline there.

    Parameters
    ----------
    projection : ndarray
        (Y, X) grey OCTA projection (the inner-retina ``ILM_OPL`` one shows the FAZ best).

    Returns
    -------
    ndarray
        bool (Y, X).
    """
    from skimage.measure import label
    from skimage.morphology import disk

    img = np.asarray(projection, np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a (Y, X) projection, got shape {img.shape}")
    h, w = img.shape
    side = max(h, w)
    coarse = ndi.gaussian_filter(img, seed_sigma * side)
    ch, cw = max(1, int(h * centre_fraction / 2)), max(1, int(w * centre_fraction / 2))
    window = coarse[h // 2 - ch:h // 2 + ch, w // 2 - cw:w // 2 + cw]
    r, c = np.unravel_index(int(np.argmin(window)), window.shape)
    r, c = r + h // 2 - ch, c + w // 2 - cw
    smooth = ndi.gaussian_filter(img, sigma * side)
    level = smooth[r, c] + alpha * (np.median(smooth) - smooth[r, c])
    k = disk(max(1, int(radius * side)))
    lab = label(ndi.binary_opening(smooth < level, k))
    if lab[r, c] == 0:  # the seed was opened away: nothing dark and wide enough at the centre
        return np.zeros(img.shape, bool)
    return ndi.binary_fill_holes(ndi.binary_closing(lab == lab[r, c], k))
