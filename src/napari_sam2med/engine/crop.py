"""Crop-around-the-prompt windows: the one rule shared by inference (engine) and training.

Small objects (a 25 px lesion on a 512 px slice is 6 px at a 128 px model input) vanish when the
whole slice is resized to the model size. In crop mode the model sees a square window around the
prompt instead: ``context`` times the prompt box's longer side (at least ``min_side`` pixels),
fixed for the whole volume / clip, padded where it leaves the slice. Training draws ``context``
from a range and jitters the centre; inference uses one fixed ``context``
(``SAM2Config.crop_context``, ``--crop-context``).

Inference (:func:`object_window`, :func:`crop_stack`, :func:`crop_prompts`) runs one Session per
object on a lazy cropped view of the stack; :mod:`.volume` pastes the result back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CropConfig", "crop_window", "window_from_box", "cut", "paste", "MIN_SIDE", "object_window",
           "crop_stack", "crop_prompts", "CroppedArray", "resolve_context", "propagate_cropped",
           "propagate_session", "segment_slice_cropped"]

#: Smallest window side in slice pixels (training and inference).
MIN_SIDE = 32


@dataclass(frozen=True)
class CropConfig:
    """Crop-around-the-prompt settings.

    Parameters
    ----------
    context : float
        Window side / longer box side at inference.
    context_range : (float, float)
        Range drawn from in training.
    jitter : float
        Training-time centre shift, as a fraction of the window side.
    min_side : int
        Smallest window side in slice pixels.
    """

    context: float = 3.0
    context_range: tuple[float, float] = (2.0, 4.5)
    jitter: float = 0.15
    min_side: int = MIN_SIDE


def window_from_box(box_rc, context: float, min_side: int, shape: tuple[int, int],
                    shift: tuple[float, float] = (0.0, 0.0)) -> tuple[int, int, int]:
    """Square window ``(row0, col0, side)`` around a (row0, col0, row1, col1) box.

    The window may extend beyond the slice (see :func:`cut`), is never larger than the
    slice's longer side, and ``shift`` moves its centre by fractions of its side.
    """
    r0, c0, r1, c1 = (float(v) for v in box_rc)
    side = max(r1 - r0, c1 - c0, 1.0) * float(context)
    side = int(round(min(max(side, float(min_side)), float(max(shape)))))
    cr = (r0 + r1) / 2 + shift[0] * side
    cc = (c0 + c1) / 2 + shift[1] * side
    return int(round(cr - side / 2)), int(round(cc - side / 2)), side


def crop_window(mask: np.ndarray, cfg: CropConfig, rng: np.random.Generator | None = None) -> tuple[int, int, int]:
    """Window around a boolean (Y, X) mask: random context and jitter when ``rng`` is given."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("cannot crop around an empty mask")
    box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    if rng is None:
        return window_from_box(box, cfg.context, cfg.min_side, mask.shape)
    ctx = rng.uniform(*cfg.context_range)
    shift = tuple(rng.uniform(-cfg.jitter, cfg.jitter, 2))
    return window_from_box(box, ctx, cfg.min_side, mask.shape, shift)


def cut(array: np.ndarray, window: tuple[int, int, int], axes: tuple[int, int] = (-2, -1), fill=0) -> np.ndarray:
    """The square ``window`` of ``array`` along its two spatial ``axes``, zero-padded outside.

    Use ``axes=(-3, -2)`` for channel-last arrays such as (N, Y, X, 3).
    """
    r0, c0, side = window
    a = np.asarray(array)
    ya, xa = (ax % a.ndim for ax in axes)
    h, w = a.shape[ya], a.shape[xa]
    out_shape = list(a.shape)
    out_shape[ya], out_shape[xa] = side, side
    out = np.full(out_shape, fill, dtype=a.dtype)
    sr0, sc0 = max(r0, 0), max(c0, 0)
    sr1, sc1 = min(r0 + side, h), min(c0 + side, w)
    if sr1 > sr0 and sc1 > sc0:
        src = [slice(None)] * a.ndim
        dst = [slice(None)] * a.ndim
        src[ya], src[xa] = slice(sr0, sr1), slice(sc0, sc1)
        dst[ya], dst[xa] = slice(sr0 - r0, sr1 - r0), slice(sc0 - c0, sc1 - c0)
        out[tuple(dst)] = a[tuple(src)]
    return out


def paste(window_mask: np.ndarray, window: tuple[int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Put a (side, side) boolean window back into a (Y, X) slice of ``shape``."""
    r0, c0, side = window
    out = np.zeros(shape, dtype=bool)
    h, w = shape
    sr0, sc0 = max(r0, 0), max(c0, 0)
    sr1, sc1 = min(r0 + side, h), min(c0 + side, w)
    if sr1 > sr0 and sc1 > sc0:
        out[sr0:sr1, sc0:sc1] = window_mask[sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0]
    return out


# -- inference: one object's window, stack view and prompts -------------------------------------
def object_window(prompts, obj_id: int, context: float, min_side: int = MIN_SIDE,
                  slices=None) -> tuple[int, int, int] | None:
    """The crop window of one object: around the bounding box of all its prompts.

    Boxes count as given, points by their bounding box (positive and negative: a correction
    click must stay inside the window), masks by their pixels' bounding box; over every slice
    the object is prompted on (or only ``slices``). Returns None when the object has no prompts.
    """
    if context < 1:
        raise ValueError(f"crop context must be at least 1 (the box itself), got {context}")
    boxes = []
    for s in prompts.slices(obj_id) if slices is None else slices:
        if prompts.get(obj_id, s) is None:
            continue
        p = prompts.get(obj_id, s)
        if p.box is not None:
            boxes.append([float(v) for v in p.box])
        if len(p.points):
            pts = np.asarray(p.points, np.float64)
            boxes.append([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
        if p.mask is not None:
            rows, cols = np.nonzero(p.mask)
            boxes.append([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
    if not boxes:
        return None
    b = np.asarray(boxes, np.float64)
    box = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
    return window_from_box(box, context, min_side, prompts.frame_shape)


class CroppedArray:
    """A lazy (N, side, side[, C]) view of a FrameStack's raw frames inside one window.

    Reading frame ``i`` reads only source slice ``i``; pixels outside the slice are ``fill``.
    """

    def __init__(self, stack, window: tuple[int, int, int], fill):
        self.stack, self.window, self.fill = stack, window, fill
        side = window[2]
        self.dtype = np.dtype(stack.dtype)
        chans = () if stack.n_channels == 1 else (stack.n_channels,)
        self.shape = (len(stack), side, side, *chans)
        self.ndim = len(self.shape)

    def _frame(self, i: int) -> np.ndarray:
        return cut(self.stack.raw(int(i)), self.window, axes=(0, 1), fill=self.fill)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if key and isinstance(key[0], (int, np.integer)):
            return self._frame(key[0])[key[1:]]
        return np.stack([self._frame(i) for i in range(self.shape[0])])[key]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _fill_value(stack) -> object:
    """The raw value that normalises to 0 (black) in ``stack``'s contrast window."""
    lo = float(stack.window[0])
    dt = np.dtype(stack.dtype)
    if dt.kind == "f":
        return dt.type(lo)
    info = np.iinfo(dt)
    return dt.type(min(max(np.floor(lo), info.min), info.max))


def crop_stack(stack, window: tuple[int, int, int]):
    """A lazy FrameStack of ``stack`` inside ``window`` that normalises exactly like ``stack``.

    The padding outside the slice is black after normalisation (the window's low end), as in training.
    """
    from ..io import FrameStack

    own = getattr(stack, "_window", None)
    window_lo_hi = None if (own is None and np.dtype(stack.dtype) == np.uint8) else stack.window
    return FrameStack(CroppedArray(stack, window, _fill_value(stack)), window=window_lo_hi,
                      name=stack.name, nan_policy=stack.nan_policy)


def crop_prompts(prompts, obj_id: int, window: tuple[int, int, int] | None, new_id: int = 1, slices=None):
    """The prompts of ``obj_id`` (on every slice, or only ``slices``), as object ``new_id``, shifted into ``window``.

    Returns a PromptSet of (side, side) slices; ``window=None`` copies them unshifted.
    """
    from .prompts import PromptSet

    r0, c0 = (0, 0) if window is None else window[:2]
    shape = prompts.frame_shape if window is None else (window[2], window[2])
    out = PromptSet(prompts.n_slices, shape)
    off = np.array([r0, c0], np.float32)
    for s in prompts.slices(obj_id) if slices is None else slices:
        p = prompts.get(obj_id, s)
        if p is None:
            continue
        if p.mask is not None:
            out.set_mask(new_id, s, p.mask if window is None else cut(p.mask, window))
            continue
        if p.box is not None:
            out.set_box(new_id, s, np.asarray(p.box, np.float32) - np.concatenate([off, off]))
        if len(p.points):
            # the window holds the points' box; clipping only absorbs its rounding to whole pixels
            pts = np.clip(np.asarray(p.points, np.float32) - off, 0, np.array(shape, np.float32) - 1)
            out.add_points(new_id, s, pts, p.labels)
    return out


def resolve_context(model, crop_context: float | None) -> float | None:
    """The crop context to use: ``None`` = the model's ``config.crop_context``; 0 = whole slices."""
    if crop_context is None:
        crop_context = getattr(getattr(model, "config", None), "crop_context", None)
    if crop_context is None or float(crop_context) == 0:
        return None
    if float(crop_context) < 1:
        raise ValueError(f"--crop-context must be 0 (off) or at least 1 (the box itself), got {crop_context}")
    return float(crop_context)


def propagate_cropped(model, stack, prompts, out=None, *, context: float, direction: str = "both",
                      start: int | None = None, stop: int | None = None, obj_ids=None,
                      memory: str = "sam2", engine: str = "torch", min_side: int = MIN_SIDE):
    """Propagate each object in its own crop window and paste its masks into ``out``.

    Each object gets its own Session on :func:`crop_stack` of its :func:`object_window` (the
    whole stack when it has no prompt to take a window from). Objects run one after the other in
    ascending id order and each slice is merged into ``out`` as it comes
    (:func:`.propagation.write_slice` with that object's id), so on a fresh ``out`` the lower id
    wins an overlap, as in :meth:`.Session.propagate`.

    Parameters
    ----------
    model : SAM2Model
        The network.
    stack : FrameStack
        The volume.
    prompts : PromptSet
        Prompts in ``stack``'s slice coordinates.
    out : array-like, optional
        Writable (N, Y, X) integer labels (numpy or zarr); a new int32 array by default.
    context : float
        Window side / prompt box side (at least 1).
    direction, start, stop, obj_ids
        As in :func:`.propagation.propagate`, per object.
    memory, engine : str
        As in :class:`.Session`.

    Yields
    ------
    PropagationStep
        One per object and slice, ``masks`` holding that object's full-size mask.

    Returns
    -------
    array
        ``out``.
    """
    from .propagation import PropagationStep, write_slice
    from .session import Session

    n, shape = len(stack), stack.frame_shape
    ids = [o for o in (prompts.object_ids if obj_ids is None else obj_ids) if prompts.slices(o)]
    if not ids:
        raise ValueError("no prompts: add points, a box or a mask to at least one object first")
    if out is None:
        out = np.zeros((n, *shape), dtype=np.int32)
    span = (n if stop is None else int(stop)) - (0 if start is None else int(start))
    done = 0
    for k, oid in enumerate(ids):
        win = object_window(prompts, oid, context, min_side)
        session = Session(model, stack if win is None else crop_stack(stack, win), memory=memory, engine=engine,
                          crop_context=0)
        session.prompts = crop_prompts(prompts, oid, win)
        lab = np.zeros((n, *session.stack.frame_shape), np.uint8)
        base = done
        for step in session.propagate(direction=direction, start=start, stop=stop, out=lab):
            z = step.slice_idx
            mask = lab[z] == 1 if win is None else paste(lab[z] == 1, win, shape)
            write_slice(out, z, {oid: mask})
            done += 1
            total = base + step.total + (len(ids) - k - 1) * span  # later objects: at most span slices each
            yield PropagationStep(slice_idx=z, masks={oid: mask}, done=done, total=total, direction=step.direction)
    return out


def propagate_session(session, crop_context: float | None = None, **kwargs):
    """``session.propagate(**kwargs)``, or :func:`propagate_cropped` of its model, stack and prompts
    when the crop context (``crop_context``, else the model's ``config.crop_context``) is set.

    The one call for a caller holding a Session (the widget) to honour the crop mode.
    """
    context = resolve_context(session.model, crop_context)
    if context is None:
        return (yield from session.propagate(**kwargs))
    return (yield from propagate_cropped(session.model, session.stack, session.prompts, context=context,
                                         memory=session.memory, engine=session.engine, **kwargs))


#: Crop sub-sessions a Session keeps for clicks (each holds the embeddings of its window).
CLICK_WINDOWS_KEPT = 4


def segment_slice_cropped(session, slice_idx: int, obj_ids, context: float, min_side: int = MIN_SIDE):
    """:meth:`.Session.segment_slice` in crop mode: each object is predicted in its own window.

    The window is :func:`object_window` of the object's prompts on ``slice_idx`` (the rule
    propagation uses; for one prompted slice the same window), cut with :func:`crop_stack`
    and run through a sub-Session that shares ``session``'s image encoder; the mask is pasted
    back into the full slice. Sub-sessions are kept per window (the last
    :data:`CLICK_WINDOWS_KEPT`), so a second click in the same window costs only the decoder.

    Parameters
    ----------
    session : Session
        The caller's session (its stack, prompts, model, memory and engine are used).
    slice_idx : int
        The slice.
    obj_ids : list of int
        Objects prompted on ``slice_idx``.
    context : float
        Window side / prompt box side (at least 1).

    Returns
    -------
    SliceResult
        Full-size (Y, X) masks and scores, as :meth:`.Session.segment_slice`.
    """
    from .session import Session, SliceResult

    shape = session.stack.frame_shape
    res = SliceResult(slice_idx)
    for oid in obj_ids:
        win = object_window(session.prompts, oid, context, min_side, slices=[slice_idx])
        sub = session._crop_sessions.pop(win, None)
        if sub is None:
            sub = Session(session.model, crop_stack(session.stack, win), memory=session.memory,
                          engine=session.engine, crop_context=0)
            sub._encoder = session.encoder  # one encoder (an ONNX export is loaded once)
        session._crop_sessions[win] = sub  # most recently used last
        while len(session._crop_sessions) > CLICK_WINDOWS_KEPT:
            session._crop_sessions.pop(next(iter(session._crop_sessions)))
        sub.prompts = crop_prompts(session.prompts, oid, win, slices=[slice_idx])
        out = sub.segment_slice(slice_idx, [1])
        res.masks[oid] = paste(out.masks[1], win, shape)
        res.scores[oid] = out.scores[1]
    return res
