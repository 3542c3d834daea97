"""Validation Dice on held-out volumes, through the inference engine (``engine.Session``).

Protocol (MedSAM2's ``box-middle``): per object, the ground-truth box on the slice where the
object is largest, propagated both ways; 3D Dice of the object against its ground truth, and 2D
Dice on the prompted slice. In crop mode the model sees the square window around that box
(:mod:`.crop`), the same window on every slice, and the prediction is pasted back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine import Session, run_to_end
from ..engine.metrics import dice
from ..sam2.model import SAM2Model
from .crop import CropConfig, cut, paste, window_from_box
from .data import LabeledVolume

__all__ = ["ObjectScore", "segment_from_box", "validate"]


@dataclass
class ObjectScore:
    """Validation result of one object."""

    volume: str
    object_id: int
    slice_idx: int
    dice_3d: float
    dice_slice: float


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(row0, col0, row1, col1) with inclusive indices, as SAM2's ``mask_to_box`` and ``sam2med evaluate``."""
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def _as_uint8(frames01: np.ndarray) -> np.ndarray:
    # uint8 keeps FrameStack's normalisation an exact x / 255 (a float crop would be re-windowed).
    return np.clip(np.rint(frames01 * 255.0), 0, 255).astype(np.uint8)


def segment_from_box(model: SAM2Model, image01: np.ndarray, box_rc, slice_idx: int,
                     crop: CropConfig | None = None) -> np.ndarray:
    """Segment one object from a box on one slice, propagated both ways.

    Parameters
    ----------
    model : SAM2Model
        The network.
    image01 : ndarray
        (Z, Y, X, 3) or (Z, Y, X) slices scaled to [0, 1].
    box_rc : sequence
        (row0, col0, row1, col1) box on ``slice_idx`` (inclusive pixel indices).
    crop : CropConfig, optional
        Segment inside the square window ``crop.context`` x the box around it.

    Returns
    -------
    ndarray
        bool (Z, Y, X) mask.
    """
    shape = image01.shape[1:3]
    if crop is None:
        session = Session(model, _as_uint8(image01))
        session.set_box(1, slice_idx, box_rc)
        return run_to_end(session.propagate(direction="both")) == 1
    r0, c0, r1, c1 = box_rc
    win = window_from_box((r0, c0, r1 + 1, c1 + 1), crop.context, crop.min_side, shape)
    sub = cut(_as_uint8(image01), win, axes=(1, 2))
    box = (r0 - win[0], c0 - win[1], r1 - win[0], c1 - win[1])
    session = Session(model, sub)
    session.set_box(1, slice_idx, box)
    labels = run_to_end(session.propagate(direction="both")) == 1
    return np.stack([paste(labels[z], win, shape) for z in range(labels.shape[0])])


def validate(model: SAM2Model, volumes: list[LabeledVolume], crop: CropConfig | None = None,
             max_objects: int = 4) -> list[ObjectScore]:
    """Box-on-the-largest-slice Dice of up to ``max_objects`` objects per volume."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for vol in volumes:
            image = np.stack([vol.frame(z) for z in range(vol.num_slices)])
            labels = np.stack([vol.label(z) for z in range(vol.num_slices)])
            for oid in sorted(vol.presence)[:max_objects]:
                gt = labels == oid
                z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(1)))
                with torch.no_grad():
                    pred = segment_from_box(model, image, _box_of(gt[z]), z, crop)
                out.append(ObjectScore(vol.name, oid, z, dice(pred, gt), dice(pred[z], gt[z])))
    finally:
        model.train(was_training)
    return out


def mean_dice(scores: list[ObjectScore]) -> tuple[float, float]:
    """Mean 3D and prompted-slice Dice."""
    if not scores:
        return float("nan"), float("nan")
    return float(np.mean([s.dice_3d for s in scores])), float(np.mean([s.dice_slice for s in scores]))
