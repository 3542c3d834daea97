"""Run an evaluation protocol over labelled volumes through the real ``engine.Session``.

Each object of each volume is segmented on its own (one Session per object, as MedSAM2 and
SLM-SAM2 evaluate): it is prompted on its key slice by the protocol (:mod:`.protocols`) and
propagated both ways; then it is scored against its ground truth with :mod:`engine.metrics`.
The objects' predictions are merged into one label volume (lower id wins an overlap) for the
volume-level (foreground) scores and the written masks.

With ``crop_context`` the model sees a square window ``crop_context`` times the prompt box's
longer side around the key slice's object, the same window on every slice, and the prediction
is pasted back: the crop-around-the-prompt mode of the shipped small model (``engine/crop.py``).

>>> cfg = EvalConfig(protocol=Protocol.BOX_MIDDLE)
>>> results = run_to_end(evaluate(model, volumes, cfg))     # list of VolumeResult
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generator, Sequence

import numpy as np

from ..engine.metrics import dice, slice_dice, volume_metrics
from .protocols import KeySlice, Protocol, box_of, key_slice, prompt_object

__all__ = ["EvalConfig", "EvalStep", "VolumeResult", "evaluate", "evaluate_volume", "segment_object"]


@dataclass
class EvalConfig:
    """Options of one evaluation run.

    Parameters
    ----------
    protocol : Protocol
        ``box-middle``, ``mask-one-slice`` or ``points-k``.
    points : int
        Clicks per object for ``points-k``.
    key_slice : KeySlice
        ``largest`` (default) or ``middle``.
    tolerance : float
        Surface-Dice tolerance in mm (spacing units).
    crop_context : float, optional
        Crop-around-the-prompt window (window side / box side); None = whole slices.
    crop_min_side : int
        Smallest crop window side, in slice pixels.
    memory : str
        Session memory: ``"sam2"`` or ``"slm"``.
    seed : int
        Seed of the ``points-k`` clicks.
    max_objects : int, optional
        Evaluate at most this many objects per volume (lowest ids first).
    """

    protocol: Protocol = Protocol.BOX_MIDDLE
    points: int = 3
    key_slice: KeySlice = KeySlice.LARGEST
    tolerance: float = 2.0
    crop_context: float | None = None
    crop_min_side: int = 32
    memory: str = "sam2"
    seed: int = 0
    max_objects: int | None = None

    def __post_init__(self) -> None:
        self.protocol = Protocol(self.protocol)
        self.key_slice = KeySlice(self.key_slice)
        if self.points < 1:
            raise ValueError(f"--points must be at least 1, got {self.points}")
        if self.tolerance < 0:
            raise ValueError(f"--tolerance must be >= 0 mm, got {self.tolerance}")
        if self.crop_context is not None and self.crop_context < 1:
            raise ValueError(f"--crop-context must be at least 1 (the box itself), got {self.crop_context}")


@dataclass
class EvalStep:
    """Progress: one slice of one object propagated."""

    volume: str
    object_id: int
    done: int
    total: int


@dataclass
class VolumeResult:
    """Everything measured on one volume."""

    name: str
    labels: np.ndarray  # int32 (Z, Y, X) merged prediction
    gt: np.ndarray  # int32 (Z, Y, X) ground truth
    spacing: tuple[float, float, float]
    object_rows: list[dict] = field(default_factory=list)
    slice_rows: list[dict] = field(default_factory=list)  # per object and slice: Dice, voxel counts
    volume_row: dict = field(default_factory=dict)
    key_slices: dict[int, int] = field(default_factory=dict)


def _uint8_volume(stack) -> np.ndarray:
    """The stack as uint8 (Z, Y, X[, 3]) after its own normalisation, so a crop is not re-windowed."""
    frames = [np.clip(np.rint(stack.normalized(z) * 255.0), 0, 255).astype(np.uint8) for z in range(len(stack))]
    return np.stack(frames)


def _slices(gen) -> Generator[int, None, np.ndarray]:
    """Re-yield a propagation's slice indices; return its label array."""
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return np.asarray(stop.value)
        yield step.slice_idx


def segment_object(model, stack, gt: np.ndarray, cfg: EvalConfig, z: int,
                   image_u8: np.ndarray | None = None) -> Generator[int, None, np.ndarray]:
    """Prompt one object on slice ``z`` by the protocol and propagate it both ways.

    Parameters
    ----------
    model : SAM2Model
        The network.
    stack : FrameStack
        The volume.
    gt : ndarray
        The object's boolean (Z, Y, X) ground truth (only slice ``z`` is shown to the model).
    cfg : EvalConfig
        Protocol and options.
    z : int
        Key slice.
    image_u8 : ndarray, optional
        ``stack`` as uint8 (needed in crop mode; computed when missing).

    Yields
    ------
    int
        The slice just propagated.

    Returns
    -------
    ndarray
        bool (Z, Y, X) prediction.
    """
    from ..engine import Session

    shape = stack.frame_shape
    if cfg.crop_context is None:
        session = Session(model, stack, memory=cfg.memory)
        prompt_object(session, 1, gt[z], cfg.protocol, z, cfg.points, cfg.seed)
        return (yield from _slices(session.propagate(direction="both"))) == 1
    from ..engine.crop import cut, paste, window_from_box  # the one crop-window rule (train and inference)

    r0, c0, r1, c1 = box_of(gt[z])
    win = window_from_box((r0, c0, r1 + 1, c1 + 1), cfg.crop_context, cfg.crop_min_side, shape)
    image_u8 = _uint8_volume(stack) if image_u8 is None else image_u8
    sub = cut(image_u8, win, axes=(1, 2))
    sub_gt = cut(gt, win, axes=(1, 2))
    session = Session(model, sub, memory=cfg.memory)
    prompt_object(session, 1, sub_gt[z], cfg.protocol, z, cfg.points, cfg.seed)
    labels = (yield from _slices(session.propagate(direction="both"))) == 1
    return np.stack([paste(labels[k], win, shape) for k in range(len(labels))])


def evaluate_volume(model, vol, cfg: EvalConfig, done: int = 0,
                    total: int | None = None) -> Generator[EvalStep, None, VolumeResult]:
    """Evaluate every object of one labelled volume (a ``train.data.LabeledVolume``).

    Yields :class:`EvalStep` per propagated slice; returns a :class:`VolumeResult`.
    """
    gt_all = np.stack([vol.label(z) for z in range(vol.num_slices)])  # int32, read slice by slice (lazy sources)
    spacing = tuple(float(s) for s in (vol.spacing or (1.0, 1.0, 1.0)))
    ids = [int(i) for i in np.unique(gt_all) if i > 0]
    if not ids:
        raise ValueError(f"{vol.name}: the label volume is empty")
    if cfg.max_objects is not None:
        ids = ids[: cfg.max_objects]
    n = gt_all.shape[0]
    total = n * len(ids) if total is None else total
    stack = vol.stack
    image_u8 = _uint8_volume(stack) if cfg.crop_context is not None else None
    merged = np.zeros(gt_all.shape, np.int32)
    res = VolumeResult(vol.name, merged, gt_all, spacing)
    for oid in ids:
        gt = gt_all == oid
        z = key_slice(gt, cfg.key_slice)
        t0 = time.perf_counter()
        gen = segment_object(model, stack, gt, cfg, z, image_u8)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                pred = stop.value
                break
            done += 1
            yield EvalStep(vol.name, oid, done, total)
        seconds = time.perf_counter() - t0
        merged[pred & (merged == 0)] = oid
        row = volume_metrics(pred, gt, spacing, cfg.tolerance)
        res.object_rows.append({
            "volume": vol.name, "object": oid, "protocol": cfg.protocol.value, "key_slice": z,
            "slice_dice": dice(pred[z], gt[z]), **row,
            "gt_slices": int(gt.any(axis=(1, 2)).sum()), "pred_slices": int(pred.any(axis=(1, 2)).sum()),
            "seconds": round(seconds, 3),
        })
        res.key_slices[oid] = z
        per = slice_dice(pred, gt)
        res.slice_rows += [{"volume": vol.name, "object": oid, "slice": k, "dice": float(per[k]),
                            "gt_pixels": int(gt[k].sum()), "pred_pixels": int(pred[k].sum())}
                           for k in range(n) if gt[k].any() or pred[k].any()]
    res.volume_row = {"volume": vol.name, "objects": len(ids), "protocol": cfg.protocol.value,
                      **volume_metrics(merged > 0, np.isin(gt_all, ids), spacing, cfg.tolerance),
                      "mean_object_dice": float(np.mean([r["dice"] for r in res.object_rows])),
                      "mean_slice_dice": float(np.mean([r["slice_dice"] for r in res.object_rows]))}
    return res


def evaluate(model, volumes: Sequence, cfg: EvalConfig) -> Generator[EvalStep, None, list[VolumeResult]]:
    """Evaluate every volume; yields :class:`EvalStep` per slice, returns the results in order."""
    counts = []
    for v in volumes:
        ids = [i for i in v.presence]
        counts.append(v.num_slices * (len(ids) if cfg.max_objects is None else min(len(ids), cfg.max_objects)))
    total, done, out = int(sum(counts)), 0, []
    for v, c in zip(volumes, counts):
        out.append((yield from evaluate_volume(model, v, cfg, done, total)))
        done += c
    return out
