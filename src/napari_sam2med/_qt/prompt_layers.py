"""The Points and Shapes layers that hold prompts, and reading prompts back from them.

Points carry ``features`` ``positive`` (bool) and ``obj_id`` (int). A point is
filled with its object's colour (the Labels layer's colour of that id) and its
polarity is shown by shape as well as by outline: positive points are discs
with a green rim, negative points are crosses with a red rim. Shift- or
Alt-click flips the widget's current polarity for that one click. Boxes are
Shapes rectangles with an ``obj_id`` feature, outlined in their object's colour.
The point size scales with the image (about 1/40 of its smaller side).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .stack_geometry import StackGeometry

POSITIVE_COLOR = "#22dd44"
NEGATIVE_COLOR = "#ff3344"
POSITIVE_SYMBOL = "disc"
NEGATIVE_SYMBOL = "cross"
BOX_COLOR = "#ffcc00"
FLIP_MODIFIERS = ("Shift", "Alt")


@dataclass(frozen=True)
class SlicePrompts:
    """Prompts of one object on one slice, in (row, col) pixel coordinates."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None


def _layer_kwargs(image_layer: Any, ndim: int | None = None) -> dict:
    """Scale, translate and affine of the image's last ``ndim`` axes, so prompts line up with pixels."""
    ndim = len(image_layer.scale) if ndim is None else ndim
    affine = np.asarray(image_layer.affine.affine_matrix)[-ndim - 1:, -ndim - 1:]
    return {"scale": tuple(image_layer.scale)[-ndim:], "translate": tuple(image_layer.translate)[-ndim:],
            "affine": affine}


def point_size(image_layer: Any) -> float:
    """Point size in the layer's data units (napari applies the scale): about 1/40 of the
    image's smaller side, at least 4 pixels (13 px on a 512 px image)."""
    frame = min(image_layer.data.shape[-3 if image_layer.rgb else -2:][:2])
    return max(4.0, frame / 40.0)


def make_points_layer(viewer: Any, image_layer: Any, name: str, ndim: int | None = None) -> Any:
    """A prompt Points layer over ``image_layer`` (``ndim``: fewer axes, e.g. 2 for a video's prompts)."""
    features = pd.DataFrame({"positive": pd.Series(dtype=bool), "obj_id": pd.Series(dtype=int)})
    ndim = image_layer.ndim if ndim is None else ndim
    transform = _layer_kwargs(image_layer, ndim)
    layer = viewer.add_points(
        np.zeros((0, ndim)), name=name, features=features, size=point_size(image_layer),
        face_color=POSITIVE_COLOR, border_color=POSITIVE_COLOR, border_width=0.2, symbol=POSITIVE_SYMBOL,
        **transform,
    )
    layer.feature_defaults = {"positive": True, "obj_id": 1}
    return layer


def make_shapes_layer(viewer: Any, image_layer: Any, name: str) -> Any:
    features = pd.DataFrame({"obj_id": pd.Series(dtype=int)})
    layer = viewer.add_shapes(
        None, ndim=image_layer.ndim, name=name, features=features, edge_color=BOX_COLOR,
        face_color="transparent", edge_width=max(1.0, float(min(image_layer.scale[-2:]))),
        **_layer_kwargs(image_layer),
    )
    layer.feature_defaults = {"obj_id": 1}
    return layer


def install_polarity_callback(points_layer: Any, negative_mode: Callable[[], bool],
                              obj_id: Callable[[], int], install: bool = True) -> Callable:
    """On mouse press, set the defaults the next added point takes (before napari adds it on release).

    With ``install=False`` the callback is only returned (the caller adds it and
    removes it again, see :class:`~.connections.Connections`).
    """

    def on_press(layer, event):
        flip = any(m in FLIP_MODIFIERS for m in getattr(event, "modifiers", ()))
        positive = negative_mode() == flip
        layer.feature_defaults = {"positive": positive, "obj_id": int(obj_id())}
        layer.current_face_color = POSITIVE_COLOR if positive else NEGATIVE_COLOR

    if install:  # prepend so it runs before the mode callback, whatever the layer mode history
        points_layer.mouse_drag_callbacks.insert(0, on_press)
    return on_press


def recolor_points(points_layer: Any, color_of: Callable[[int], Any] | None = None) -> None:
    """Style every point from its features: fill = object colour (``color_of(obj_id)``; by
    polarity when None), symbol and rim = polarity."""
    positive = np.asarray(points_layer.features.get("positive", []), dtype=bool)
    if len(positive) != len(points_layer.data) or not len(positive):
        return
    polarity = np.where(positive[:, None], _rgba(POSITIVE_COLOR), _rgba(NEGATIVE_COLOR))
    if color_of is None:
        faces = polarity
    else:
        ids = np.asarray(points_layer.features["obj_id"], dtype=int)
        faces = np.array([np.asarray(color_of(int(o)), float)[:4] for o in ids]).reshape(-1, 4)
    symbols = np.where(positive, POSITIVE_SYMBOL, NEGATIVE_SYMBOL)
    if not np.allclose(np.asarray(points_layer.face_color), faces):
        points_layer.face_color = faces
    if not np.allclose(np.asarray(points_layer.border_color), polarity):
        points_layer.border_color = polarity
    if [str(s) for s in np.atleast_1d(points_layer.symbol)] != list(symbols):
        points_layer.symbol = list(symbols)


def recolor_boxes(shapes_layer: Any, color_of: Callable[[int], Any]) -> None:
    """Outline each box in its object's colour."""
    if shapes_layer is None or not len(shapes_layer.data):
        return
    ids = np.asarray(shapes_layer.features["obj_id"], dtype=int)
    colors = np.array([np.asarray(color_of(int(o)), float)[:4] for o in ids]).reshape(-1, 4)
    if not np.allclose(np.asarray(shapes_layer.edge_color), colors):
        shapes_layer.edge_color = colors


def _rgba(color: str) -> np.ndarray:
    rgb = [int(color[i: i + 2], 16) / 255.0 for i in (1, 3, 5)]
    return np.array([*rgb, 1.0])


def collect_prompts(points_layer: Any | None, shapes_layer: Any | None,
                    geometry: StackGeometry) -> dict[tuple[int, int], SlicePrompts]:
    """All prompts on the current plane, keyed by ``(obj_id, slice_idx)``.

    Coordinates are the layers' data coordinates, which equal the image's
    pixel coordinates because the layers share the image's transform.
    """
    points: dict[tuple[int, int], list] = {}
    if points_layer is not None and len(points_layer.data):
        feats = points_layer.features
        for coords, positive, obj in zip(points_layer.data, feats["positive"], feats["obj_id"]):
            if geometry.on_this_plane(coords):
                key = (int(obj), geometry.slice_of(coords))
                row, col = geometry.in_plane(coords)  # (z, y, x) -> the slice's (row, col)
                points.setdefault(key, []).append(((float(row), float(col)), int(bool(positive))))
    boxes: dict[tuple[int, int], tuple] = {}
    if shapes_layer is not None and len(shapes_layer.data):
        for verts, kind, obj in zip(shapes_layer.data, shapes_layer.shape_type, shapes_layer.features["obj_id"]):
            verts = np.asarray(verts)
            if kind != "rectangle" or not geometry.on_this_plane(verts[0]):
                continue
            plane = geometry.in_plane(verts)
            lo, hi = plane.min(axis=0), plane.max(axis=0)
            boxes[(int(obj), geometry.slice_of(verts[0]))] = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    out = {}
    for key in set(points) | set(boxes):
        pts = points.get(key, [])
        out[key] = SlicePrompts(tuple(p for p, _ in pts), tuple(lab for _, lab in pts), boxes.get(key))
    return out


def remove_prompts(points_layer: Any | None, shapes_layer: Any | None, geometry: StackGeometry | None,
                   obj_id: int, slice_idx: int | None = None) -> None:
    """Delete one object's points and boxes, on one slice or (``slice_idx=None``) everywhere."""
    for layer in (points_layer, shapes_layer):
        if layer is None or not len(layer.data):
            continue
        ids = np.asarray(layer.features["obj_id"])
        keep_slice = np.ones(len(ids), bool)
        if slice_idx is not None and geometry is not None:
            anchors = layer.data if layer is points_layer else [np.asarray(v)[0] for v in layer.data]
            keep_slice = np.array([geometry.slice_of(c) == slice_idx for c in anchors])
        drop = np.flatnonzero((ids == obj_id) & keep_slice)
        if len(drop):
            layer.selected_data = {int(i) for i in drop}
            layer.remove_selected()
