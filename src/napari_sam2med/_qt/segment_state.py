"""State of the segmentation widget, and syncing layer prompts into the engine session.

No Qt here: the widget owns one :class:`SegmentationState` (no global singletons).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .label_edits import EXTERNAL, EditGroup, EditHistory, apply_group, merge_object_masks
from .prompt_layers import SlicePrompts
from .stack_geometry import StackGeometry


@dataclass
class SegmentationState:
    """Everything one widget works on.

    Attributes
    ----------
    model : SAM2Model or None
        The loaded network.
    model_text : str
        Human description of the model (shown in the UI).
    image_layer, labels_layer, points_layer, shapes_layer : napari layers or None
        The layers in use.
    geometry : StackGeometry or None
        Stack axis and fixed positions of the session's image plane.
    session : engine.Session or None
        Prompts, embeddings and memory of the current stack.
    session_key : tuple or None
        What the session was built from; a different key means a new session.
    mask_prompts : dict
        ``(obj_id, slice_idx) -> bool (Y, X)`` masks taken from the Labels layer.
    synced : dict
        ``(obj_id, slice_idx) -> prompt signature`` last sent to the session.
    history : EditHistory
        Undo/redo of our writes into ``labels_layer`` (and markers for napari paint strokes).
    """

    model: Any = None
    model_text: str = ""
    image_layer: Any = None
    labels_layer: Any = None
    points_layer: Any = None
    shapes_layer: Any = None
    geometry: StackGeometry | None = None
    session: Any = None
    session_key: tuple | None = None
    mask_prompts: dict = field(default_factory=dict)
    synced: dict = field(default_factory=dict)
    history: EditHistory = field(default_factory=EditHistory)

    def reset_session(self) -> None:
        self.session, self.session_key, self.synced = None, None, {}


def desired_prompts(layer_prompts: dict[tuple[int, int], SlicePrompts],
                    mask_prompts: dict[tuple[int, int], np.ndarray]) -> dict[tuple[int, int], Any]:
    """Merge layer prompts and mask prompts; points/boxes on a key replace its mask prompt."""
    out: dict[tuple[int, int], Any] = dict(layer_prompts)
    for key in list(mask_prompts):
        if key in layer_prompts:
            del mask_prompts[key]  # a click after a mask prompt starts over from the click
        else:
            out[key] = mask_prompts[key]
    return out


def _signature(prompt: Any) -> Any:
    return ("mask", id(prompt)) if isinstance(prompt, np.ndarray) else prompt


def sync_session(session: Any, desired: dict[tuple[int, int], Any], synced: dict) -> list[tuple[int, int]]:
    """Send changed prompts to ``session``; return the changed ``(obj_id, slice_idx)`` keys.

    ``synced`` is updated in place. A key that disappeared is cleared in the session.
    """
    changed = []
    for key in sorted(set(desired) | set(synced)):
        want = desired.get(key)
        if key in synced and want is not None and synced[key] == _signature(want):
            continue
        obj_id, slice_idx = key
        session.clear_prompts(obj_id, slice_idx)
        synced.pop(key, None)
        changed.append(key)
        if want is None:
            continue
        if isinstance(want, np.ndarray):
            session.set_mask(obj_id, slice_idx, want)
        else:
            if want.box is not None:
                session.set_box(obj_id, slice_idx, want.box)
            if want.points:
                session.add_points(obj_id, slice_idx, np.asarray(want.points), np.asarray(want.labels))
        synced[key] = _signature(want)
    return changed


def write_masks(labels_layer: Any, geometry: StackGeometry, slice_idx: int,
                masks: dict[int, np.ndarray], group: EditGroup) -> bool:
    """Merge ``masks`` into one slice of the Labels layer, recording the change in ``group``.

    Returns whether any pixel changed. Other ids stay untouched (see :mod:`.label_edits`).
    """
    index = geometry.full_index(slice_idx)
    before = np.asarray(labels_layer.data[index])
    after = merge_object_masks(before, masks)
    if np.array_equal(before, after):
        return False
    group.record(index, before, after)
    labels_layer.data[index] = after
    return True


def undo_step(state: SegmentationState, undo: bool) -> str:
    """Undo (or redo) the newest step of ``state.history``; return a message for the status line.

    Paint strokes live in napari's own Labels history (marked :data:`EXTERNAL`) and are
    replayed through it, so clicks, propagations and strokes undo in the order they happened.
    """
    step = state.history.pop_undo() if undo else state.history.pop_redo()
    if step is None:
        return "Nothing to undo." if undo else "Nothing to redo."
    layer = state.labels_layer
    if step == EXTERNAL:
        layer.undo() if undo else layer.redo()
        title = "paint stroke"
    else:
        apply_group(layer.data, step, undo=undo)
        layer.refresh()
        title = step.title
    return f"{'Undid' if undo else 'Redid'}: {title}"
