"""Evaluation protocols: which prompt an object gets, on which slice, before propagation.

* ``box-middle`` (MedSAM2's): the ground-truth bounding box on the key slice, propagated both ways.
* ``mask-one-slice`` (SLM-SAM2's): the ground-truth mask on the key slice, propagated both ways.
* ``points-k``: ``k`` positive clicks on the key slice: the first at the object's most interior
  pixel (maximum of the distance transform; the middle one of a plateau), the others drawn inside
  the object (seeded).

The key slice is the slice where the object's area is largest (``KeySlice.LARGEST``, MedSAM2's
"middle slice" in practice, and the default), or the middle of the object's slice range
(``KeySlice.MIDDLE``). SLM-SAM2's inference takes the prompt slice per volume from a user-given
table; either rule can stand in for it.

Boxes are ``(row0, col0, row1, col1)`` with inclusive pixel indices (MedSAM2's and SAM2's
``mask_to_box``), the convention of :meth:`napari_sam2med.engine.Session.set_box`.
"""

from __future__ import annotations

import enum

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Protocol", "KeySlice", "key_slice", "box_of", "click_points", "prompt_object"]


class Protocol(str, enum.Enum):
    """How each object is prompted."""

    BOX_MIDDLE = "box-middle"
    MASK_ONE_SLICE = "mask-one-slice"
    POINTS_K = "points-k"


class KeySlice(str, enum.Enum):
    """Which slice carries the prompt."""

    LARGEST = "largest"
    MIDDLE = "middle"


def key_slice(gt: np.ndarray, rule: KeySlice | str = KeySlice.LARGEST) -> int:
    """The prompt slice of one object's boolean (Z, Y, X) mask (``ValueError`` when empty)."""
    area = np.asarray(gt).reshape(len(gt), -1).sum(axis=1)
    present = np.flatnonzero(area)
    if present.size == 0:
        raise ValueError("the object is empty")
    if KeySlice(rule) is KeySlice.LARGEST:
        return int(np.argmax(area))  # the first of equally large slices
    return int(present[len(present) // 2])


def box_of(mask2d: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(row0, col0, row1, col1)``, inclusive pixel indices, of a non-empty mask."""
    rows, cols = np.nonzero(mask2d)
    if rows.size == 0:
        raise ValueError("cannot take the box of an empty mask")
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def click_points(mask2d: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``k`` positive (row, col) clicks inside a mask: its most interior pixel, then random ones."""
    if k < 1:
        raise ValueError(f"points-k needs k >= 1, got {k}")
    m = np.asarray(mask2d, bool)
    if not m.any():
        raise ValueError("cannot click inside an empty mask")
    dist = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    top = np.argwhere(dist == dist.max())  # a plateau for elongated objects: take its middle
    first = top[int(np.argmin(((top - top.mean(0)) ** 2).sum(1)))]
    inside = np.argwhere(m)
    rng = np.random.default_rng(seed)
    extra = inside[rng.choice(len(inside), size=min(k - 1, len(inside)), replace=False)] if k > 1 else inside[:0]
    return np.vstack([np.asarray(first)[None], extra]).astype(np.float32)


def prompt_object(session, obj_id: int, gt: np.ndarray, protocol: Protocol | str, z: int,
                  points: int = 3, seed: int = 0) -> None:
    """Put one object's protocol prompt on slice ``z`` of a Session.

    Parameters
    ----------
    session : napari_sam2med.engine.Session
        Session over the volume (or over a crop of it).
    obj_id : int
        Object id in the session.
    gt : ndarray
        The object's boolean (Y, X) ground truth on slice ``z``, in the session's coordinates.
    protocol : Protocol
        See the module docstring.
    z : int
        The key slice.
    points, seed : int
        Clicks and their seed for ``points-k``.
    """
    protocol = Protocol(protocol)
    if protocol is Protocol.BOX_MIDDLE:
        session.set_box(obj_id, z, box_of(gt))
    elif protocol is Protocol.MASK_ONE_SLICE:
        session.set_mask(obj_id, z, np.asarray(gt, bool))
    else:
        pts = click_points(gt, points, seed)
        session.add_points(obj_id, z, pts, np.ones(len(pts), np.int32), clear=True)
