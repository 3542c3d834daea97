"""Writing model masks into a Labels array without destroying a user's work.

Pure numpy (no Qt) so the rules are easy to test.

Overlap rule
------------
A write on one slice touches only the object ids it carries ("own ids"):

* pixels that held an own id are cleared first (the new mask replaces the old);
* each own mask is then written where the pixel is background (0);
  own ids are applied in ascending order, so among the objects of one run
  the lower id wins an overlap;
* pixels of any other id are never changed, even where a new mask covers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def merge_object_masks(current: np.ndarray, masks: dict[int, np.ndarray]) -> np.ndarray:
    """Return a new label slice with ``masks`` merged into ``current`` (the engine's rule)."""
    from ..engine.propagation import merge_masks

    return merge_masks(current, masks)


@dataclass
class SliceEdit:
    """One changed slice: where it lives in the Labels array, and its values before/after."""

    index: tuple
    before: np.ndarray
    after: np.ndarray


@dataclass
class EditGroup:
    """Edits undone together (one click, one propagation)."""

    title: str
    edits: list[SliceEdit] = field(default_factory=list)

    def record(self, index: tuple, before: np.ndarray, after: np.ndarray) -> None:
        """Add a slice change; a slice changed twice keeps its first ``before``."""
        for edit in self.edits:
            if edit.index == index:
                edit.after = np.array(after, copy=True)
                return
        self.edits.append(SliceEdit(index, np.array(before, copy=True), np.array(after, copy=True)))


#: Marker for an undo step that lives in napari's own Labels history (a paint stroke).
EXTERNAL = "napari-labels-history"


class EditHistory:
    """Linear undo/redo of :class:`EditGroup` objects and external markers.

    Parameters
    ----------
    max_levels : int
        Oldest steps are dropped beyond this many.
    """

    def __init__(self, max_levels: int = 20) -> None:
        if max_levels < 1:
            raise ValueError(f"max_levels must be >= 1, got {max_levels}")
        self.max_levels = max_levels
        self.undo_stack: list[Any] = []
        self.redo_stack: list[Any] = []

    def push(self, step: EditGroup | str) -> None:
        """Record a finished step (an :class:`EditGroup` or :data:`EXTERNAL`); clears redo."""
        if isinstance(step, EditGroup) and not step.edits:
            return
        self.undo_stack.append(step)
        del self.undo_stack[: -self.max_levels]
        self.redo_stack.clear()

    def pop_undo(self) -> EditGroup | str | None:
        """Take the newest step for undoing (moves it to the redo stack)."""
        if not self.undo_stack:
            return None
        step = self.undo_stack.pop()
        self.redo_stack.append(step)
        return step

    def pop_redo(self) -> EditGroup | str | None:
        """Take the newest undone step for redoing (moves it back to the undo stack)."""
        if not self.redo_stack:
            return None
        step = self.redo_stack.pop()
        self.undo_stack.append(step)
        return step

    def clear(self) -> None:
        self.undo_stack.clear()
        self.redo_stack.clear()


def apply_group(data: Any, group: EditGroup, undo: bool) -> None:
    """Write a group's ``before`` (undo) or ``after`` (redo) slices into ``data``."""
    edits = reversed(group.edits) if undo else group.edits
    for edit in edits:
        data[edit.index] = edit.before if undo else edit.after
