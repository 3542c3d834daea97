"""Split OCTA vessel maps into one object per vessel, and the FAZ into one object.

SAM-OCTA2 segments retinal vessels as several objects (one per vessel tree or
hand-coloured vessel) so that each gets its own prompts and memory. Inputs:

* colour-coded maps (``Colored_RV``, the coloured half of ``ref_mask``):
  (H, W, 3), one colour per vessel, black background;
* integer label maps (per-vessel ids);
* binary vessel masks.

Each colour / label is split into 8-connected components; components smaller
than ``min_size`` pixels are dropped; the survivors are numbered 1..n in
order of decreasing size (ties: raster order of their first pixel).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

_EIGHT = np.ones((3, 3), bool)


def _components(mask: np.ndarray, min_size: int) -> list[np.ndarray]:
    lab, n = ndi.label(mask, structure=_EIGHT)
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel())[1:]
    return [lab == (i + 1) for i in range(n) if sizes[i] >= min_size]


def _number_by_size(parts: list[np.ndarray], shape) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    keyed = []
    for part in parts:
        first = int(np.flatnonzero(part.ravel())[0])
        keyed.append((-int(part.sum()), first, part))
    keyed.sort(key=lambda t: (t[0], t[1]))
    for new_id, (_, _, part) in enumerate(keyed, start=1):
        labels[part & (labels == 0)] = new_id
    return labels


def split_vessels(vessel_map: np.ndarray, min_size: int = 20, split_components: bool = True) -> np.ndarray:
    """One int32 label per vessel.

    Parameters
    ----------
    vessel_map : np.ndarray
        (H, W, 3|4) colour-coded map, (H, W) integer labels, or (H, W) bool mask.
    min_size : int
        Smallest object kept, in pixels.
    split_components : bool
        For colour / label maps: split each colour into connected components
        (default) or keep each colour as one object (possibly disconnected).

    Returns
    -------
    np.ndarray
        int32 (H, W), 0 background, ids 1..n by decreasing size.
    """
    vessel_map = np.asarray(vessel_map)
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if vessel_map.ndim == 3 and vessel_map.shape[-1] in (3, 4):
        rgb = vessel_map[..., :3].astype(np.int64)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        values = [v for v in np.unique(codes) if v != 0]
    elif vessel_map.ndim == 2:
        codes = vessel_map.astype(np.int64)
        values = [v for v in np.unique(codes) if v != 0]
    else:
        raise ValueError(f"vessel map must be (H, W) or (H, W, 3), got shape {vessel_map.shape}")
    parts: list[np.ndarray] = []
    for value in values:
        mask = codes == value
        if split_components:
            parts.extend(_components(mask, min_size))
        elif mask.sum() >= min_size:
            parts.append(mask)
    return _number_by_size(parts, codes.shape)


def faz_object(mask: np.ndarray) -> np.ndarray:
    """The FAZ as one object: the largest 8-connected component of ``mask`` (int32, id 1)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"FAZ mask must be 2D, got shape {mask.shape}")
    lab, n = ndi.label(mask > 0, structure=_EIGHT)
    out = np.zeros(mask.shape, np.int32)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        out[lab == 1 + int(np.argmax(sizes))] = 1
    return out


def objects_for_task(reference: np.ndarray, task: str, min_size: int = 20) -> np.ndarray:
    """Objects of a reference annotation: vessels (``"rv"``) or the FAZ (``"faz"``)."""
    if task == "rv":
        return split_vessels(reference, min_size=min_size)
    if task == "faz":
        ref = np.asarray(reference)
        return faz_object(ref.any(axis=-1) if ref.ndim == 3 else ref)
    raise ValueError(f"task must be 'rv' or 'faz', got {task!r}")
