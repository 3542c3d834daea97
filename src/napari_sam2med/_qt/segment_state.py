"""Per-image annotation state of the segment dock, and syncing layer prompts into the engine session.

No Qt here. The dock keeps one :class:`ImageAnnotation` per image layer in the
viewer's context (see :mod:`.viewer_context`), so switching images and closing
and reopening the dock lose nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.axes import Axis
from .label_edits import EXTERNAL, EditGroup, EditHistory, apply_group, merge_object_masks
from .prompt_layers import SlicePrompts
from .stack_geometry import StackGeometry


@dataclass
class ObjectInfo:
    """What the user named an object, and whether it is shown."""

    name: str = ""
    hidden: bool = False


@dataclass(eq=False)  # identity: one annotation per image, usable as a dict key
class ImageAnnotation:
    """Everything the segment dock keeps for one image layer (one per image, restored on switch).

    Attributes
    ----------
    image_layer, labels_layer, points_layer, shapes_layer : napari layers or None
        The image and the layers the dock made for it.
    committed_layer : napari Labels layer or None
        Accepted objects (see the Commit button); later work never writes there.
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
    shown : dict or None
        ``(obj_id, slice_idx) -> prompt signature`` the labels show. A new session (new
        model, reopened dock, loaded project) re-segments only prompts that differ from it;
        None: take the current prompts as shown (after loading a project).
    project_folder : Path or None
        Where the annotation is saved (and autosaved).
    history : EditHistory
        Undo/redo of our writes into ``labels_layer`` (and markers for napari paint strokes).
    objects : dict
        ``obj_id -> ObjectInfo`` (names, visibility) of the object list.
    propagated : dict
        ``obj_id -> set of slices`` written by propagation (for the object list).
    label_ids : set or None
        Ids present in ``labels_layer``, kept up to date by the dock's writes so the object
        list never scans a large volume per click; None: scan once when next needed.
    view_axis : Axis
        Slice direction of a 3D grayscale volume (axial by default; see :mod:`.segment_axis`).
    """

    image_layer: Any = None
    labels_layer: Any = None
    points_layer: Any = None
    shapes_layer: Any = None
    committed_layer: Any = None
    geometry: StackGeometry | None = None
    session: Any = None
    session_key: tuple | None = None
    mask_prompts: dict = field(default_factory=dict)
    synced: dict = field(default_factory=dict)
    shown: dict | None = field(default_factory=dict)
    project_folder: Any = None
    history: EditHistory = field(default_factory=EditHistory)
    objects: dict = field(default_factory=dict)
    propagated: dict = field(default_factory=dict)
    label_ids: set | None = None
    view_axis: Axis = Axis.AXIAL

    def note_ids(self, masks: dict) -> None:
        """Record the ids of ``masks`` that have pixels (after a write into the labels layer)."""
        if self.label_ids is not None:
            self.label_ids |= {int(o) for o, m in masks.items() if np.any(m)}

    def reset_session(self) -> None:
        self.session, self.session_key, self.synced = None, None, {}

    @property
    def layers(self) -> tuple:
        """The dock's own layers of this image (those that exist)."""
        return tuple(layer for layer in (self.labels_layer, self.points_layer, self.shapes_layer,
                                         self.committed_layer) if layer is not None)


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


def undo_step(state: ImageAnnotation, undo: bool) -> str:
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
        if hasattr(step, "after_apply"):  # e.g. an auto-segmentation also adds / removes its mask prompt
            step.after_apply(undo)
        layer.refresh()
        title = step.title
    return f"{'Undid' if undo else 'Redid'}: {title}"
