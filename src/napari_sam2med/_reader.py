"""napari reader hooks: TIFF, Zarr/OME-Zarr, NIfTI, NRRD, NumPy (.npy, MedSAM2 .npz) and DICOM series.

Thin wrappers over :mod:`napari_sam2med.io`; they return layer-data tuples and
import nothing from napari. A file whose name says it holds labels
(``*label*``, ``*seg*``, ``*mask*``, ``*gt*``) and has an integer dtype opens
as a Labels layer; everything else opens as an Image layer with the voxel
spacing recorded in the file as its scale.

Volumes with a scanner geometry (NIfTI, NRRD, npz, DICOM) are placed in napari's
world in mm with ``scale`` = voxel size and ``affine`` = orientation + origin
(world axes ``(S, P, L)``, see :mod:`napari_sam2med.io.geometry`); the
:class:`~napari_sam2med.io.Geometry` travels in ``layer.metadata["geometry"]``,
and the writer puts labels back in exactly that space. Layers drawn on top of
such an image take :func:`overlay_kwargs` so they line up voxel for voxel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

_FILE_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".npy", ".npz", ".nrrd")
#: Key of the source :class:`~napari_sam2med.io.Geometry` in a layer's ``metadata``.
GEOMETRY_KEY = "geometry"
_LABEL_NAME = re.compile(r"(^|[^a-z])(labels?|seg(mentation)?|masks?|gt|ground[_-]?truth)([^a-z]|$)")


def _looks_like_dicom_dir(path: Path) -> bool:
    """A directory holding at least one file with the DICOM 'DICM' preamble marker."""
    if not path.is_dir():
        return False
    for count, child in enumerate(sorted(path.iterdir())):
        if count >= 32:
            break
        if child.is_file():
            try:
                with open(child, "rb") as handle:
                    handle.seek(128)
                    if handle.read(4) == b"DICM":
                        return True
            except OSError:
                continue
    return False


def _readable(path: Path) -> bool:
    name = path.name.lower()
    if path.is_dir():
        return name.endswith(".zarr") or any(
            (path / m).exists() for m in ("zarr.json", ".zarray", ".zgroup")
        ) or _looks_like_dicom_dir(path)
    if name.endswith(".npz"):
        return _is_medsam2_npz(path)
    return name.endswith(_FILE_SUFFIXES)


def _is_medsam2_npz(path: Path) -> bool:
    """Only npz files holding an ``imgs`` volume (MedSAM2 layout) are ours."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return "imgs" in npz.files
    except Exception:
        return False


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """Return :func:`read_volumes` when every path is a format we read, else ``None``."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_readable(Path(p)) for p in paths):
        return None
    return read_volumes


def _is_labels_file(path: Path, dtype: np.dtype) -> bool:
    from .io import stack_name

    return np.dtype(dtype).kind in "ui" and bool(_LABEL_NAME.search(stack_name(path).lower()))


def _geometry_meta(geometry: Any, ndim: int) -> dict[str, Any]:
    if geometry is None or ndim != 3:
        return {}
    return {**geometry.napari_layer_kwargs(), "metadata": {GEOMETRY_KEY: geometry}}


def read_volume(path: str | Path) -> tuple:
    """Read one volume as a napari layer-data tuple ``(data, meta, layer_type)``."""
    return read_layers(path)[0]


def read_layers(path: str | Path) -> list[tuple]:
    """Layer-data tuples of one file: the volume, plus ``gts`` labels of a MedSAM2 ``.npz``."""
    from .io import LazySlices, read_spacing, stack_name
    from .io import read_volume as io_read_volume

    path = Path(path)
    data, geometry = io_read_volume(path)
    if isinstance(data, LazySlices):
        data = np.asarray(data)  # NIfTI/DICOM: napari needs a full array protocol
    meta: dict[str, Any] = {"name": stack_name(path)}
    ndim = len(data.shape)
    if geometry is not None and ndim == 3:
        meta.update(_geometry_meta(geometry, ndim))
    elif ndim >= 3:
        try:
            spacing = read_spacing(path)
        except ValueError:
            spacing = (1.0, 1.0, 1.0)
        meta["scale"] = (1.0,) * (ndim - 3) + tuple(float(s) for s in spacing)
    layer_type = "labels" if _is_labels_file(path, data.dtype) else "image"
    layers = [(data, meta, layer_type)]
    if path.name.lower().endswith(".npz"):
        from .io.medical import read_npz

        _, _, gts = read_npz(path)
        if gts is not None:
            extra = {k: v for k, v in meta.items() if k != "name"}
            layers.append((np.asarray(gts), {**extra, "name": f"{meta['name']} gts"}, "labels"))
    return layers


def overlay_kwargs(image_layer: Any) -> dict[str, Any]:
    """Keyword arguments for a layer drawn over ``image_layer`` (labels, points, shapes).

    ``scale``, ``translate`` and ``affine`` so data coordinates match the
    image's voxels, and the image's geometry in ``metadata`` so saved labels
    land in the scanner space the image came from. Works on any object with
    napari layer attributes (no napari import).
    """
    out: dict[str, Any] = {"scale": tuple(image_layer.scale), "translate": tuple(image_layer.translate)}
    affine = getattr(image_layer, "affine", None)
    matrix = getattr(affine, "affine_matrix", affine)
    if matrix is not None:
        out["affine"] = np.asarray(matrix)
    geometry = getattr(image_layer, "metadata", {}).get(GEOMETRY_KEY)
    if geometry is not None:
        out["metadata"] = {GEOMETRY_KEY: geometry}
    return out


def read_volumes(path: str | list[str]) -> list[tuple]:
    """napari reader function: one layer per path."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [layer for p in paths for layer in read_layers(p)]
