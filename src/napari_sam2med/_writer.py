"""napari writer hooks for Labels layers: TIFF, Zarr, NIfTI, NRRD and DICOM-SEG, integer dtype kept exactly.

Everything goes through :func:`napari_sam2med.io.write_labels` (atomic). NIfTI,
NRRD and DICOM-SEG (``.dcm``, only over an image read from a DICOM series)
labels are written in the scanner space of the image they belong to:

- a layer carrying ``metadata["geometry"]`` (set by our reader on the image and
  copied to overlays by :func:`napari_sam2med._reader.overlay_kwargs`) gets
  exactly that geometry, NIfTI header codes included; its shape and its napari
  transform must still match the image's, else saving stops with a one-line
  message;
- any other layer gets the geometry of its own napari transform (scale,
  translate, rotate, affine), read in our ``(S, P, L)`` world convention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._reader import GEOMETRY_KEY

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SCANNER_SUFFIXES = NIFTI_SUFFIXES + (".nrrd", ".dcm")


def _scale(meta: dict, ndim: int) -> list[float] | None:
    scale = meta.get("scale")
    if scale is None:
        return None
    values = [float(s) for s in scale]
    return values if len(values) == ndim and all(v > 0 for v in values) else None


def layer_data_to_world(meta: dict, ndim: int) -> np.ndarray:
    """A layer's full data -> world matrix from its state (``affine @ translate·rotate·shear·scale``)."""
    scale = np.asarray(meta.get("scale", np.ones(ndim)), dtype=np.float64)
    translate = np.asarray(meta.get("translate", np.zeros(ndim)), dtype=np.float64)
    rotate = np.asarray(meta.get("rotate", np.eye(ndim)), dtype=np.float64)
    shear = np.asarray(meta.get("shear", np.zeros(0)), dtype=np.float64)
    if shear.size and np.any(np.abs(shear) > 1e-9):
        raise ValueError("the labels layer is sheared; cannot save it in scanner space")
    inner = np.eye(ndim + 1)
    inner[:ndim, :ndim] = rotate.reshape(ndim, ndim) @ np.diag(scale)
    inner[:ndim, ndim] = translate
    affine = meta.get("affine")
    outer = np.eye(ndim + 1) if affine is None else np.asarray(affine, dtype=np.float64)
    if outer.shape != (ndim + 1, ndim + 1):
        raise ValueError(f"layer affine has shape {outer.shape}, expected {(ndim + 1, ndim + 1)}")
    return outer @ inner


def labels_geometry(labels: np.ndarray, meta: dict) -> Any:
    """The :class:`~napari_sam2med.io.Geometry` a 3D labels layer is saved in.

    Raises
    ------
    ValueError
        The layer carries an image geometry but its shape or transform differs
        from that image's.
    """
    from .io.geometry import from_napari

    transform = layer_data_to_world(meta, labels.ndim)
    own = from_napari(transform, labels.shape)
    source = (meta.get("metadata") or {}).get(GEOMETRY_KEY)
    if source is None:
        return own
    source.check_labels(labels.shape, "labels layer")
    if not np.allclose(transform, source.napari_affine, atol=1e-4 * max(1.0, float(np.abs(transform).max()))):
        raise ValueError(
            "the labels layer's scale/affine no longer matches the image it belongs to "
            f"({source.describe()}); reset its transform before saving"
        )
    return source


class LabelsSaveError(RuntimeError):
    """Why a labels layer cannot be saved (one line).

    Not a ``ValueError`` on purpose: napari's ``save_layers`` swallows ValueErrors
    from writers and reports only "not a valid writer", hiding the reason.
    """


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """napari single-layer writer for Labels: ``.tif/.tiff``, ``.zarr``, ``.nii/.nii.gz``, ``.nrrd``, ``.dcm``.

    Raises
    ------
    LabelsSaveError
        Bad labels (non-integer dtype, wrong dimensionality) or labels whose
        shape/transform no longer match the image they belong to.
    """
    try:
        return _write_labels_layer(path, data, meta)
    except ValueError as err:
        raise LabelsSaveError(f"cannot save {Path(path).name}: {err}") from err


def _write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    from .io import write_labels

    target = Path(path)
    labels = np.asarray(data)
    if labels.dtype.kind not in "uib":
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    scale = _scale(meta, labels.ndim)
    if not target.name.lower().endswith(SCANNER_SUFFIXES):
        return [str(write_labels(target, labels, scale=scale))]
    if labels.ndim == 2:  # one slice: a single-plane volume
        volume_meta = {"scale": [1.0] + (scale or [1.0, 1.0])}
        return [str(write_labels(target, labels[None], geometry=labels_geometry(labels[None], volume_meta)))]
    if labels.ndim != 3:
        raise ValueError(f"NIfTI/NRRD/DICOM-SEG labels must be 2D or 3D, got shape {labels.shape}")
    return [str(write_labels(target, labels, geometry=labels_geometry(labels, meta)))]
