"""napari reader hooks: TIFF, Zarr/OME-Zarr, NIfTI, NumPy and DICOM series directories.

Thin wrappers over :mod:`napari_sam2med.io`; they return layer-data tuples and
import nothing from napari. A file whose name says it holds labels
(``*label*``, ``*seg*``, ``*mask*``, ``*gt*``) and has an integer dtype opens
as a Labels layer; everything else opens as an Image layer with the voxel
spacing recorded in the file as its scale.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

_FILE_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz", ".npy")
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
    return name.endswith(_FILE_SUFFIXES)


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """Return :func:`read_volumes` when every path is a format we read, else ``None``."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_readable(Path(p)) for p in paths):
        return None
    return read_volumes


def _is_labels_file(path: Path, dtype: np.dtype) -> bool:
    from .io import stack_name

    return np.dtype(dtype).kind in "ui" and bool(_LABEL_NAME.search(stack_name(path).lower()))


def read_volume(path: str | Path) -> tuple:
    """Read one volume as a napari layer-data tuple ``(data, meta, layer_type)``."""
    from .io import LazySlices, read_array, read_spacing, stack_name

    path = Path(path)
    data = read_array(path)
    if isinstance(data, LazySlices):
        data = np.asarray(data)  # NIfTI/DICOM: napari needs a full array protocol
    meta: dict[str, Any] = {"name": stack_name(path)}
    ndim = len(data.shape)
    if ndim >= 3:
        try:
            spacing = read_spacing(path)
        except ValueError:
            spacing = (1.0, 1.0, 1.0)
        meta["scale"] = (1.0,) * (ndim - 3) + tuple(float(s) for s in spacing)
    layer_type = "labels" if _is_labels_file(path, data.dtype) else "image"
    return data, meta, layer_type


def read_volumes(path: str | list[str]) -> list[tuple]:
    """napari reader function: one layer per path."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [read_volume(p) for p in paths]
