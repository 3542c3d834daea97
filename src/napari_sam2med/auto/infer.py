"""Segment slices, stacks and videos with no clicks: a prompt encoder + frozen SAM2.

Two video modes (:class:`VideoMode`):

* ``per-frame``: every slice is auto-prompted and decoded on its own;
* ``first-frame-propagate``: the first slice is auto-prompted, its mask becomes a mask prompt
  (``Session.set_mask``) and SAM2's memory propagates it through the rest of the stack.

Long work is a generator of :class:`~napari_sam2med.engine.propagation.PropagationStep` (the
propagation's own progress type, so a widget handles both alike), returning the labels.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Generator, Iterable

import numpy as np

from ..engine.propagation import PropagationStep
from ..sam2.model import SAM2Model
from .prompt_net import PromptNet

__all__ = ["NoObjectFound", "VideoMode", "auto_mask", "auto_steps", "auto_segment", "auto_segment_to_file"]


class NoObjectFound(ValueError):
    """First-frame-propagate: the prompt encoder found nothing on the start slice."""


class VideoMode(str, enum.Enum):
    """How a stack is auto-segmented (see the module docstring)."""

    PER_FRAME = "per-frame"
    FIRST_FRAME_PROPAGATE = "first-frame-propagate"

    @classmethod
    def parse(cls, value: "VideoMode | str") -> "VideoMode":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown video mode {value!r}; choose one of {', '.join(m.value for m in cls)}") from None


def auto_mask(model: SAM2Model, net: PromptNet, frame01: np.ndarray) -> tuple[np.ndarray, float]:
    """Auto-segment one (Y, X) or (Y, X, 3) slice in [0, 1]: :func:`.predict.predict_mask` (its docstring has the
    parameters and the two modes); kept as this module's name for the per-slice step."""
    from .predict import predict_mask

    return predict_mask(model, net, np.asarray(frame01))


def auto_steps(model: SAM2Model, net: PromptNet, stack, obj_id: int = 1,
               slices: Iterable[int] | None = None) -> Generator[PropagationStep, None, int]:
    """Per-frame auto-segmentation, one :class:`PropagationStep` per slice (nothing kept in memory).

    Parameters
    ----------
    model, net : the frozen SAM2 and its prompt encoder.
    stack : FrameStack
        Anything with ``len`` and ``normalized(i)`` (a slice scaled to [0, 1]).
    obj_id : int
        Object id the masks are reported under.
    slices : iterable of int, optional
        Slices to segment, in this order (default: all).

    Yields
    ------
    PropagationStep
        ``masks={obj_id: bool (Y, X)}`` of each slice (empty where SAM2 says "no object").

    Returns
    -------
    int
        Slices segmented.
    """
    order = list(range(len(stack)) if slices is None else slices)
    for k, i in enumerate(order):
        mask, _ = auto_mask(model, net, stack.normalized(int(i)))
        yield PropagationStep(slice_idx=int(i), masks={obj_id: mask}, done=k + 1, total=len(order))
    return len(order)


def auto_segment(model: SAM2Model, net: PromptNet, stack, mode: VideoMode | str = VideoMode.PER_FRAME, *,
                 obj_id: int = 1, start: int = 0, out: np.ndarray | None = None,
                 memory: str = "sam2") -> Generator[PropagationStep, None, np.ndarray]:
    """Auto-segment every slice of a stack as object ``obj_id``.

    Parameters
    ----------
    model, net : the frozen SAM2 and its prompt encoder.
    stack : FrameStack or array
        (N, Y, X[, C]) slices; arrays are wrapped in a lazy ``FrameStack``.
    mode : VideoMode or str
        ``"per-frame"`` or ``"first-frame-propagate"``.
    obj_id : int
        Label written for the object.
    start : int
        First-frame-propagate: the slice auto-prompted (propagated both ways from it).
    out : ndarray, optional
        (N, Y, X) integer labels to write into (other ids are kept); a new array otherwise.

    Yields
    ------
    PropagationStep
        One per slice.

    Returns
    -------
    ndarray
        The labels (``out`` if given).

    Raises
    ------
    NoObjectFound
        First-frame-propagate and nothing was found on the start slice.
    ValueError
        The stack cannot feed the prompt encoder's named input channels (``channels.check_stack``).
    """
    from ..engine.propagation import merge_masks
    from ..io import FrameStack
    from .channels import check_stack

    mode = VideoMode.parse(mode)
    if not isinstance(stack, FrameStack):
        stack = FrameStack(stack)
    check_stack(net.config.input_channels, stack, mode is VideoMode.FIRST_FRAME_PROPAGATE)
    n = len(stack)
    if out is None:
        out = np.zeros((n, *stack.frame_shape), np.uint8 if obj_id < 256 else np.uint16)
    if mode is VideoMode.PER_FRAME:
        for step in auto_steps(model, net, stack, obj_id):
            out[step.slice_idx] = merge_masks(np.asarray(out[step.slice_idx]), step.masks)
            yield step
        return out
    if not 0 <= start < n:
        raise ValueError(f"start slice {start} is out of range 0..{n - 1}")
    from ..engine.session import Session

    mask, score = auto_mask(model, net, stack.normalized(start))
    if not mask.any():
        raise NoObjectFound(f"the prompt encoder found no object on slice {start} (object score {score:.2f})")
    session = Session(model, stack, memory=memory)
    session.set_mask(obj_id, start, mask)
    yield from session.propagate(direction="both", out=out)
    return out


def auto_segment_to_file(model: SAM2Model, net: PromptNet, stack, out_path: str | Path,
                         mode: VideoMode | str = VideoMode.PER_FRAME,
                         **kw) -> Generator[PropagationStep, None, Path]:
    """:func:`auto_segment` a stack opened by ``engine.volume.open_volume`` and write its labels
    atomically (``engine.volume.write_label_file``: back in the input's voxel order and geometry)."""
    from ..engine.volume import write_label_file

    view, geometry = getattr(stack, "axis_view", None), getattr(stack, "geometry", None)
    labels = yield from auto_segment(model, net, stack, mode, **kw)
    if view is not None:
        labels = view.to_original(labels)
    return write_label_file(out_path, labels, geometry, None if view is None else view.axis)
