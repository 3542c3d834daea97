"""Propagation of every prompted object through a stack, as a generator.

Every prompted slice is a conditioning slice (SAM2's ``add_all_frames_to_correct_as_cond``
behaviour), so a correction added on an already-propagated slice always reaches the slices
after it when the stack is propagated again (sam2 issues #546, #719). Each pass starts with
an empty recent window; memory is bounded by the policy's horizon, not the stack length.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Generator, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..sam2.device import autocast_context
from ..sam2.model import FrameFeatures, MemoryContext, SAM2Model, TrackOutput
from .memory import MemoryBank, MemoryEntry
from .progress import run_to_end  # re-exported: the one generator driver lives in progress.py

__all__ = ["PropagationStep", "propagate", "track_step", "torch_heads", "run_to_end", "merge_masks", "write_slice", "exclusive_masks", "DIRECTIONS"]

DIRECTIONS = ("forward", "backward", "both")


@dataclass
class PropagationStep:
    """Progress of a propagation: the slice just written and its (disjoint) object masks."""

    slice_idx: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    done: int = 0
    total: int = 0
    direction: str = "forward"
    logits: dict = field(default_factory=dict, repr=False)  # object id -> low-res logits (1, 1, S/4, S/4)


def merge_masks(current: np.ndarray, masks: dict[int, np.ndarray], own_ids: Iterable[int] | None = None) -> np.ndarray:
    """Return a copy of a label slice with object masks merged in, other ids untouched.

    Pixels of ``own_ids`` (default: the ids in ``masks``) are cleared first, then each mask is
    written where the slice is background, in ascending id order (so the lower id wins an
    overlap between the given masks). Pixels of any other id never change.
    """
    cur = np.array(current, copy=True)
    ids = sorted(int(i) for i in masks)
    if any(i <= 0 for i in ids):
        raise ValueError(f"object ids must be positive, got {ids}")
    own = ids if own_ids is None else sorted(int(i) for i in own_ids)
    if own:
        cur[np.isin(cur, own)] = 0
    for i in ids:
        m = np.asarray(masks[i], dtype=bool)
        if m.shape != cur.shape:
            raise ValueError(f"mask of object {i} has shape {m.shape}, expected {cur.shape}")
        cur[m & (cur == 0)] = i
    return cur


def write_slice(out, slice_idx: int, masks: dict[int, np.ndarray], own_ids: Iterable[int] | None = None) -> np.ndarray:
    """Merge object masks into ``out[slice_idx]`` (see :func:`merge_masks`) and return the new slice."""
    cur = merge_masks(out[slice_idx], masks, own_ids)
    out[slice_idx] = cur
    return cur


def exclusive_masks(masks: dict[int, np.ndarray], logits: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Make object masks disjoint: where several claim a pixel, the larger logit keeps it."""
    ids = list(masks)
    if len(ids) < 2:
        return dict(masks)
    stack = np.stack([np.asarray(masks[i], bool) for i in ids])
    score = np.where(stack, np.stack([np.asarray(logits[i]) for i in ids]), -np.inf)
    winner = np.argmax(score, axis=0)
    return {i: stack[k] & (winner == k) for k, i in enumerate(ids)}


def _passes(direction: str, anchors: list[int], start: int, stop: int) -> list[tuple[int, int, bool]]:
    """(first slice, last slice, reverse) of each pass."""
    passes = []
    if direction in ("forward", "both"):
        before = [a for a in anchors if a < stop]
        if before:
            passes.append((min(before), stop - 1, False))
    if direction == "backward":
        after = [a for a in anchors if a >= start]
        if after:
            passes.append((max(after), start, True))
    if direction == "both":
        a = min(anchors)
        if a > start:
            passes.append((min(a, stop - 1), start, True))
    return passes


def _layout(ctx: MemoryContext | None) -> tuple | None:
    """What must be equal for contexts to share a batch (the short-term context included)."""
    if ctx is None:
        return None
    return (tuple(t for t, _ in ctx.spatial), tuple(o for o, _ in ctx.pointers), ctx.ptr_tpos_max,
            _layout(ctx.recent))


def _merge_contexts(contexts: list[MemoryContext]) -> MemoryContext:
    """Stack memory contexts of the same layout along the batch dimension."""
    first = contexts[0]
    if len(contexts) == 1:
        return first
    spatial = [(t, torch.cat([c.spatial[k][1] for c in contexts], 0)) for k, (t, _) in enumerate(first.spatial)]
    pointers = [(o, torch.cat([c.pointers[k][1] for c in contexts], 0)) for k, (o, _) in enumerate(first.pointers)]
    recent = None if first.recent is None else _merge_contexts([c.recent for c in contexts])
    return MemoryContext(spatial=spatial, pointers=pointers, ptr_tpos_max=first.ptr_tpos_max, recent=recent)


def torch_heads(model: SAM2Model, pix: torch.Tensor, feats: FrameFeatures) -> TrackOutput:
    """The decoder (no prompt) and memory encoder of a tracked frame in PyTorch, as ``model.track_step`` runs them."""
    multi, ious, low, high, ptr, score = model.forward_sam_heads(pix, feats.high_res, None, None,
                                                                 model.use_multimask(None))
    mem = model.encode_memory(feats, high, score, from_points=False)
    return TrackOutput(low_res_masks=low, high_res_masks=high, ious=ious, obj_ptr=ptr, object_score_logits=score,
                       multimask_logits=multi, maskmem_features=mem)


def track_step(model: SAM2Model, feats: FrameFeatures, memory: MemoryContext | None, attention=None,
               heads=None) -> TrackOutput:
    """``model.track_step`` of a tracked (unprompted) frame, with engine parts swapped in.

    ``attention`` is called like ``model.memory_attention`` on the long memory and ``heads`` like
    :func:`torch_heads` (e.g. the ONNX parts of the session's engine); ``None`` runs the model's own
    code for that part, and with neither this is ``model.track_step`` itself.
    """
    if (attention is None and heads is None) or memory is None:
        return model.track_step(feats, memory=memory)
    pix = model._attend(feats, memory, attention or model.memory_attention)
    if memory.recent is not None:  # SLM-SAM2: the short-term attention and the fuser stay in PyTorch
        pix = model.recent_memory_fuser(model._attend(feats, memory.recent, model.recent_memory_attention), pix)
    return torch_heads(model, pix, feats) if heads is None else heads(pix, feats)


def _track_frame(session, frame: int, banks: dict[int, MemoryBank], reverse: bool) -> dict[int, MemoryEntry]:
    """Predict every object on one frame; objects with the same memory layout share a batch."""
    model, cfg = session.model, session.model.config
    engine = session.encoder
    attention = engine.memory_attention() if hasattr(engine, "memory_attention") else None
    heads = engine.track_heads() if hasattr(engine, "track_heads") else None
    results: dict[int, MemoryEntry] = {}
    groups: dict[tuple, list[tuple[int, MemoryContext]]] = defaultdict(list)
    for oid, bank in banks.items():
        if frame in bank.cond:
            results[oid] = bank.cond[frame]
            continue
        ctx = session.policy.select(frame, bank, reverse=reverse, num_frames=session.num_slices, config=cfg)
        groups[_layout(ctx)].append((oid, ctx))
    if groups:
        feats = session.features.get(frame)
        for members in groups.values():
            with autocast_context(session.device):
                out = track_step(model, feats.expand(len(members)), _merge_contexts([c for _, c in members]),
                                 attention, heads)
            for k, (oid, _) in enumerate(members):
                entry = MemoryEntry(features=out.maskmem_features[k:k + 1].to(torch.bfloat16),
                                    obj_ptr=out.obj_ptr[k:k + 1].float(),
                                    low_res_logits=out.low_res_masks[k:k + 1].float(),
                                    score=out.object_score_logits[k:k + 1].float())
                banks[oid].recent[frame] = entry
                session.policy.evict(frame, banks[oid], reverse=reverse, config=cfg)
                results[oid] = entry
    return results


def propagate(session, direction: str = "both", start: int | None = None, stop: int | None = None,
              obj_ids: Iterable[int] | None = None, out=None) -> Generator[PropagationStep, None, object]:
    """Track every prompted object through the stack, one slice per ``yield``.

    Parameters
    ----------
    session : Session
        Prompts, model and stack.
    direction : {"forward", "backward", "both"}
        ``forward`` runs from the first prompted slice up, ``backward`` from the last
        prompted slice down, ``both`` from the first prompted slice both ways.
    start, stop : int, optional
        Only slices ``start <= z < stop`` are written (default the whole stack); tracking
        still begins at the prompted slices.
    obj_ids : iterable of int, optional
        Objects to propagate (default: all with prompts).
    out : array-like, optional
        A writable (N, Y, X) integer array (numpy, zarr, memmap); a new int32 array by default.
        Only the given objects' ids are written; other labels stay untouched.

    Yields
    ------
    PropagationStep
        After each slice is written (closing the generator between slices leaves whole slices).

    Returns
    -------
    array
        ``out``, the label stack.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    n = session.num_slices
    start = 0 if start is None else int(start)
    stop = n if stop is None else int(stop)
    if not 0 <= start < stop <= n:
        raise ValueError(f"slice range {start}..{stop} is not inside 0..{n}")
    ids = [o for o in (session.prompts.object_ids if obj_ids is None else obj_ids) if session.prompts.slices(o)]
    if not ids:
        raise ValueError("no prompts: add points, a box or a mask to at least one object first")
    if out is None:
        out = np.zeros((n, *session.stack.frame_shape), dtype=np.int32)
    elif tuple(out.shape) != (n, *session.stack.frame_shape):
        raise ValueError(f"output shape {tuple(out.shape)} differs from the stack {(n, *session.stack.frame_shape)}")

    with torch.inference_mode():
        banks = {}
        for o in ids:
            cond = {s: session.conditioning_entry(o, s) for s in session.prompts.slices(o)}
            session._ensure_memory(o, cond)
            banks[o] = MemoryBank(cond=cond)
    anchors = sorted({s for b in banks.values() for s in b.cond})
    plan = _passes(direction, anchors, start, stop)
    order = [(z, reverse) for first, last, reverse in plan
             for z in range(first, last + (-1 if reverse else 1), -1 if reverse else 1)]
    total = len({z for z, _ in order if start <= z < stop})
    session._last_out = out
    h, w = session.stack.frame_shape
    yielded: set[int] = set()
    current_reverse = None
    for pos, (z, reverse) in enumerate(order):
        if reverse != current_reverse:  # a new pass starts from the conditioning slices only
            for b in banks.values():
                b.clear_recent()
            current_reverse = reverse
        with session.lock, torch.inference_mode():
            if z not in session.features:
                session.features.prefetch([zz for zz, _ in order[pos:pos + session.lookahead_batch]])
            entries = _track_frame(session, z, banks, reverse)
        if not start <= z < stop or z in yielded:
            continue
        logits = {o: e.low_res_logits for o, e in entries.items()}
        up = F.interpolate(torch.cat(list(logits.values()), 0), size=(h, w), mode="bilinear",
                           align_corners=False)[:, 0].cpu().numpy()
        up_by_id = {o: up[k] for k, o in enumerate(logits)}
        masks = exclusive_masks({o: u > 0 for o, u in up_by_id.items()}, up_by_id)
        write_slice(out, z, masks, own_ids=ids)
        for o in ids:
            session._tracked.setdefault(o, set()).add(z)
        yielded.add(z)
        yield PropagationStep(slice_idx=z, masks=masks, done=len(yielded), total=total,
                              direction="backward" if reverse else "forward", logits=logits)
    return out
