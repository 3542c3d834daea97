"""Saving and reopening one image's annotation as a project folder (zarr + JSON). No Qt here.

A project folder holds::

    project.json      version, image name and shape, objects (names, hidden), prompts
    labels.zarr       the working labels (int32, one chunk per slice)
    committed.zarr    the committed labels (when there are any)

It is written with :func:`napari_sam2med.io.writers.atomic_write`: a crash or a
full disk while saving leaves the previous project intact, never a half-written one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .segment_state import ImageAnnotation, ObjectInfo

PROJECT_VERSION = 1
PROJECT_FILE = "project.json"


@dataclass
class ProjectData:
    """What a project folder holds (see the module docstring)."""

    image_name: str
    image_shape: tuple[int, ...]
    labels: np.ndarray
    committed: np.ndarray | None = None
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    point_positive: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    boxes: list = field(default_factory=list)
    box_ids: list = field(default_factory=list)
    objects: dict = field(default_factory=dict)


def _write_array(path: Path, array: np.ndarray) -> None:
    import zarr

    chunks = (1, *array.shape[1:]) if array.ndim >= 3 else array.shape
    target = zarr.create_array(store=str(path), shape=array.shape, dtype=array.dtype, chunks=chunks)
    target[...] = array


def project_of(ann: ImageAnnotation) -> ProjectData:
    """Collect the annotation's state from its layers."""
    if ann.labels_layer is None or ann.image_layer is None:
        raise ValueError("nothing to save: this image has no SAM2 labels yet")
    points, ids, positive = np.zeros((0, ann.labels_layer.ndim)), np.zeros(0, int), np.zeros(0, bool)
    if ann.points_layer is not None and len(ann.points_layer.data):
        feats = ann.points_layer.features
        points = np.asarray(ann.points_layer.data, float)
        ids, positive = np.asarray(feats["obj_id"], int), np.asarray(feats["positive"], bool)
    boxes, box_ids = [], []
    if ann.shapes_layer is not None and len(ann.shapes_layer.data):
        boxes = [np.asarray(v, float) for v in ann.shapes_layer.data]
        box_ids = [int(o) for o in ann.shapes_layer.features["obj_id"]]
    committed = None if ann.committed_layer is None else np.asarray(ann.committed_layer.data)
    return ProjectData(ann.image_layer.name, tuple(int(s) for s in np.shape(ann.labels_layer.data)),
                       np.asarray(ann.labels_layer.data), committed, points, ids, positive, boxes, box_ids,
                       dict(ann.objects))


def save_project(folder: str | Path, ann: ImageAnnotation) -> Path:
    """Write the annotation of one image to ``folder`` (replaced atomically); returns the folder."""
    from ..io.writers import atomic_write

    data = project_of(ann)
    meta = {
        "version": PROJECT_VERSION,
        "image": {"name": data.image_name, "shape": list(data.image_shape)},
        "objects": {str(k): {"name": v.name, "hidden": v.hidden} for k, v in sorted(data.objects.items())},
        "points": [{"coords": [float(c) for c in p], "obj_id": int(o), "positive": bool(s)}
                   for p, o, s in zip(data.points, data.point_ids, data.point_positive)],
        "boxes": [{"vertices": np.asarray(b).tolist(), "obj_id": int(o)} for b, o in zip(data.boxes, data.box_ids)],
        "committed": data.committed is not None,
    }

    def write(tmp: Path) -> None:
        tmp.mkdir()
        _write_array(tmp / "labels.zarr", data.labels)
        if data.committed is not None:
            _write_array(tmp / "committed.zarr", data.committed)
        (tmp / PROJECT_FILE).write_text(json.dumps(meta, indent=1))

    return atomic_write(folder, write)


def load_project(folder: str | Path) -> ProjectData:
    """Read a project folder.

    Raises
    ------
    FileNotFoundError
        When ``folder`` holds no ``project.json``.
    ValueError
        When the file is of another version or does not match its labels.
    """
    import zarr

    folder = Path(folder)
    if not (folder / PROJECT_FILE).is_file():
        raise FileNotFoundError(f"not a project folder (no {PROJECT_FILE}): {folder}")
    meta = json.loads((folder / PROJECT_FILE).read_text())
    if meta.get("version") != PROJECT_VERSION:
        raise ValueError(f"project version {meta.get('version')!r} is not supported (expected {PROJECT_VERSION})")
    labels = np.asarray(zarr.open_array(str(folder / "labels.zarr"), mode="r")[...])
    shape = tuple(meta["image"]["shape"])
    if labels.shape != shape:
        raise ValueError(f"labels.zarr has shape {labels.shape}, project.json says {shape}")
    committed = None
    if meta.get("committed"):
        committed = np.asarray(zarr.open_array(str(folder / "committed.zarr"), mode="r")[...])
    points = meta.get("points", [])
    return ProjectData(
        image_name=meta["image"]["name"], image_shape=shape, labels=labels, committed=committed,
        points=np.array([p["coords"] for p in points], float).reshape(len(points), len(shape)),
        point_ids=np.array([p["obj_id"] for p in points], int),
        point_positive=np.array([p["positive"] for p in points], bool),
        boxes=[np.asarray(b["vertices"], float) for b in meta.get("boxes", [])],
        box_ids=[int(b["obj_id"]) for b in meta.get("boxes", [])],
        objects={int(k): ObjectInfo(v.get("name", ""), bool(v.get("hidden", False)))
                 for k, v in meta.get("objects", {}).items()},
    )


def apply_project(ann: ImageAnnotation, data: ProjectData, make_committed: Any) -> None:
    """Put a loaded project into the annotation's layers (which must exist and match its shape).

    ``make_committed()`` creates the committed layer when the project has one.
    """
    if tuple(np.shape(ann.labels_layer.data)) != tuple(data.image_shape):
        raise ValueError(f"the project is for an image of shape {data.image_shape}, "
                         f"this one is {tuple(np.shape(ann.labels_layer.data))}")
    ann.labels_layer.data = data.labels.astype(np.asarray(ann.labels_layer.data).dtype, copy=False)
    if data.committed is not None:
        if ann.committed_layer is None:
            ann.committed_layer = make_committed()
        ann.committed_layer.data = data.committed
    points = ann.points_layer
    points.data = np.zeros((0, points.ndim))
    if len(data.points):
        points.data = data.points  # features grow with their defaults, then get the real values
        points.features = {"positive": data.point_positive, "obj_id": data.point_ids}
    shapes = ann.shapes_layer
    shapes.data = []
    if data.boxes:
        shapes.add_rectangles(data.boxes)
        shapes.features = {"obj_id": np.asarray(data.box_ids, int)}
    ann.objects = dict(data.objects)
    ann.label_ids = None
    ann.history.clear()
    ann.mask_prompts.clear()
    ann.reset_session()
