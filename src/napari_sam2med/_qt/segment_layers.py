"""Finding or making the segment dock's layers of one image (labels, prompt points, boxes, committed).

Each layer carries ``metadata["sam2med"] = {"role": ..., "image": <image unique_id>}``
so a reopened dock (or a restored project) finds and reuses it instead of
adding duplicates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .prompt_layers import make_points_layer, make_shapes_layer
from .segment_state import ImageAnnotation

META_KEY = "sam2med"
ROLES = ("labels", "points", "boxes", "committed")


def tag(layer: Any, role: str, image: Any) -> None:
    """Mark ``layer`` as the dock's ``role`` layer of ``image``."""
    layer.metadata[META_KEY] = {"role": role, "image": str(image.unique_id)}


def find_layer(viewer: Any, image: Any, role: str) -> Any:
    """The layer tagged ``role`` for ``image``, or None."""
    uid = str(image.unique_id)
    for layer in viewer.layers:
        meta = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
        if isinstance(meta, dict) and meta.get("role") == role and meta.get("image") == uid:
            return layer
    return None


def _labels_shape(image: Any) -> tuple[int, ...]:
    return tuple(image.data.shape[:-1] if image.rgb else image.data.shape)


def make_layer(viewer: Any, image: Any, role: str) -> Any:
    """Add the ``role`` layer of ``image`` on the image's scale, translate and affine."""
    from .._reader import overlay_kwargs

    # scale, translate, affine and the image's scanner geometry (so saved labels land in its space)
    transform = overlay_kwargs(image)
    if role == "labels":
        layer = viewer.add_labels(np.zeros(_labels_shape(image), np.int32),
                                  name=f"{image.name} SAM2 labels", opacity=0.5, **transform)
    elif role == "committed":
        layer = viewer.add_labels(np.zeros(_labels_shape(image), np.int32),
                                  name=f"{image.name} committed", opacity=0.35, **transform)
    elif role == "points":
        layer = make_points_layer(viewer, image, f"{image.name} SAM2 points")
    elif role == "boxes":
        layer = make_shapes_layer(viewer, image, f"{image.name} SAM2 boxes")
    else:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    tag(layer, role, image)
    return layer


def ensure_layers(viewer: Any, ann: ImageAnnotation) -> bool:
    """Give ``ann`` its labels, points and boxes layers: kept, found by tag, or made.

    Returns whether any layer was created. The active layer is left as it was.
    """
    image = ann.image_layer
    current = viewer.layers.selection.active
    created = False
    for role, attr in (("labels", "labels_layer"), ("points", "points_layer"), ("boxes", "shapes_layer")):
        layer = getattr(ann, attr)
        if layer is not None and layer in viewer.layers:
            continue
        layer = find_layer(viewer, image, role)
        if layer is None:
            layer = make_layer(viewer, image, role)
            created = True
        setattr(ann, attr, layer)
    if ann.committed_layer is not None and ann.committed_layer not in viewer.layers:
        ann.committed_layer = None
    if ann.committed_layer is None:
        ann.committed_layer = find_layer(viewer, image, "committed")
    if created and current is not None and current in viewer.layers:
        viewer.layers.selection.active = current
    return created


def layers_ready(viewer: Any, ann: ImageAnnotation) -> bool:
    """Whether the annotation's image and its three working layers are all in the viewer."""
    return all(layer is not None and layer in viewer.layers
               for layer in (ann.image_layer, ann.labels_layer, ann.points_layer, ann.shapes_layer))
