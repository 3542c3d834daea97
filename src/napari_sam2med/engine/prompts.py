"""Prompts per object and slice, in napari (row, col) coordinates, with the CLI's JSON format.

JSON format (``sam2med propagate --prompts``)::

    {"prompts": [
        {"object": 1, "slice": 0, "points": [[row, col], ...], "labels": [1, 0]},
        {"object": 2, "slice": 0, "box": [row0, col0, row1, col1]},
        {"object": 1, "slice": 4, "points": [[row, col]], "labels": [0]}
    ]}

Entries for the same object and slice accumulate. ``labels`` default to all positive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

__all__ = ["SlicePrompt", "PromptSet"]


@dataclass
class SlicePrompt:
    """The prompts of one object on one slice."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (N, 2) row, col
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))  # (N,) 1 / 0
    box: np.ndarray | None = None  # (4,) row0, col0, row1, col1
    mask: np.ndarray | None = None  # (Y, X) bool

    @property
    def empty(self) -> bool:
        return len(self.points) == 0 and self.box is None and self.mask is None


def _check_points(points, labels, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=np.float32)
    if pts.size == 0:
        raise ValueError("empty prompt: give at least one point")
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) [row, col] pairs, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points contain NaN or infinite coordinates")
    lab = np.ones(len(pts), np.int32) if labels is None else np.asarray(labels).astype(np.int32).ravel()
    if len(lab) != len(pts):
        raise ValueError(f"{len(pts)} points but {len(lab)} labels")
    if not np.isin(lab, (0, 1)).all():
        raise ValueError("point labels must be 1 (positive) or 0 (negative)")
    h, w = shape
    out = (pts[:, 0] < 0) | (pts[:, 0] > h - 1) | (pts[:, 1] < 0) | (pts[:, 1] > w - 1)
    if out.any():
        r, c = pts[np.argmax(out)]
        raise ValueError(f"point ({r:g}, {c:g}) lies outside the {h}x{w} slice")
    return pts, lab


def _check_box(box, shape: tuple[int, int]) -> np.ndarray:
    b = np.asarray(box, dtype=np.float32).ravel()
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise ValueError("box must be [row0, col0, row1, col1]")
    r0, c0, r1, c1 = b
    r0, r1 = sorted((r0, r1))
    c0, c1 = sorted((c0, c1))
    h, w = shape
    if r1 <= r0 or c1 <= c0:
        raise ValueError("box has zero area")
    if r1 < 0 or c1 < 0 or r0 > h - 1 or c0 > w - 1:
        raise ValueError(f"box {b.tolist()} lies outside the {h}x{w} slice")
    return np.array([max(r0, 0), max(c0, 0), min(r1, h - 1), min(c1, w - 1)], np.float32)


class PromptSet:
    """Prompts of every object on every slice of one stack.

    Parameters
    ----------
    n_slices : int
        Length of the stack.
    frame_shape : (int, int)
        (Y, X) of one slice; prompts outside it are rejected.
    """

    def __init__(self, n_slices: int, frame_shape: tuple[int, int]):
        self.n_slices = int(n_slices)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self._data: dict[int, dict[int, SlicePrompt]] = {}
        self.version = 0  # bumped on every change; sessions use it to invalidate results

    # ------------------------------------------------------------ editing
    def _slot(self, obj_id: int, slice_idx: int) -> SlicePrompt:
        if isinstance(obj_id, bool) or int(obj_id) != obj_id or obj_id <= 0:
            raise ValueError(f"object ids are positive integers, got {obj_id!r}")
        if not 0 <= int(slice_idx) < self.n_slices:
            raise ValueError(f"slice {slice_idx} is out of range 0..{self.n_slices - 1}")
        self.version += 1
        return self._data.setdefault(int(obj_id), {}).setdefault(int(slice_idx), SlicePrompt())

    def add_points(self, obj_id: int, slice_idx: int, points, labels=None, clear: bool = False) -> None:
        """Add points (row, col) with labels 1/0 to one object on one slice."""
        pts, lab = _check_points(points, labels, self.frame_shape)
        p = self._slot(obj_id, slice_idx)
        if clear:
            p.points, p.labels = pts, lab
        else:
            p.points = np.concatenate([p.points, pts])
            p.labels = np.concatenate([p.labels, lab])
        p.mask = None

    def set_box(self, obj_id: int, slice_idx: int, box) -> None:
        """Set the box (row0, col0, row1, col1) of one object on one slice."""
        b = _check_box(box, self.frame_shape)
        p = self._slot(obj_id, slice_idx)
        p.box, p.mask = b, None

    def set_mask(self, obj_id: int, slice_idx: int, mask) -> None:
        """Use a binary mask (Y, X) as the prompt; it replaces points and box on that slice."""
        m = np.asarray(mask)
        if m.shape != self.frame_shape:
            raise ValueError(f"mask shape {m.shape} differs from the slice shape {self.frame_shape}")
        if not m.any():
            raise ValueError("empty mask prompt")
        p = self._slot(obj_id, slice_idx)
        p.points = np.zeros((0, 2), np.float32)
        p.labels = np.zeros((0,), np.int32)
        p.box, p.mask = None, m.astype(bool)

    def clear(self, obj_id: int | None = None, slice_idx: int | None = None) -> None:
        """Remove prompts: all, one object's, one slice's, or one object's on one slice."""
        self.version += 1
        for oid in [obj_id] if obj_id is not None else list(self._data):
            slices = self._data.get(oid, {})
            for s in [slice_idx] if slice_idx is not None else list(slices):
                slices.pop(s, None)
            if not slices:
                self._data.pop(oid, None)

    # ------------------------------------------------------------ queries
    @property
    def object_ids(self) -> list[int]:
        return sorted(self._data)

    def slices(self, obj_id: int) -> list[int]:
        """Prompted slices of one object, sorted."""
        return sorted(self._data.get(obj_id, {}))

    def get(self, obj_id: int, slice_idx: int) -> SlicePrompt | None:
        return self._data.get(obj_id, {}).get(slice_idx)

    def __iter__(self) -> Iterator[tuple[int, int, SlicePrompt]]:
        for oid in self.object_ids:
            for s in self.slices(oid):
                yield oid, s, self._data[oid][s]

    def __len__(self) -> int:
        return sum(len(v) for v in self._data.values())

    # ------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """Serialise to the CLI's prompt format (mask prompts are left out)."""
        items = []
        for oid, s, p in self:
            item: dict[str, Any] = {"object": oid, "slice": s}
            if len(p.points):
                item["points"] = p.points.tolist()
                item["labels"] = p.labels.tolist()
            if p.box is not None:
                item["box"] = p.box.tolist()
            if len(item) > 2:
                items.append(item)
        return {"prompts": items}

    @classmethod
    def from_json(cls, data: dict, n_slices: int, frame_shape: tuple[int, int]) -> "PromptSet":
        """Parse the CLI's prompt format, validating every entry against the stack."""
        if not isinstance(data, dict) or not isinstance(data.get("prompts"), list):
            raise ValueError('prompts file must be {"prompts": [...]}')
        out = cls(n_slices, frame_shape)
        for k, item in enumerate(data["prompts"]):
            try:
                if not isinstance(item, dict) or "object" not in item or "slice" not in item:
                    raise ValueError('needs "object" and "slice"')
                if "points" not in item and "box" not in item:
                    raise ValueError('needs "points" or "box"')
                oid, s = item["object"], item["slice"]
                if not isinstance(oid, int) or not isinstance(s, int):
                    raise ValueError('"object" and "slice" must be integers')
                if "box" in item:
                    out.set_box(oid, s, item["box"])
                if "points" in item:
                    out.add_points(oid, s, item["points"], item.get("labels"))
            except (ValueError, TypeError) as err:
                raise ValueError(f"prompt #{k}: {err}") from None
        if not len(out):
            raise ValueError("the prompts file holds no prompts")
        return out
