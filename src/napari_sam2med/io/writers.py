"""Atomic writers for label volumes and generic arrays.

Every writer first writes to a hidden temporary path next to the target
and then renames it into place, so a failure never leaves a partial file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

LABEL_SUFFIXES = (".tif", ".tiff", ".zarr")
ARRAY_SUFFIXES = (".tif", ".tiff", ".zarr", ".npy")
#: Slices copied per block when streaming a (possibly lazy) array into zarr.
_ZARR_BLOCK_BYTES = 64 * 2**20


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary sibling path, then move it to ``path``.

    Parameters
    ----------
    path : str or Path
        Final file or directory. An existing target is replaced only after
        the new one is complete.
    write : callable
        Writes the whole output to the path it is given.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path).expanduser()
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {parent}")
    token = uuid.uuid4().hex[:12]
    tmp = parent / f".{path.name}.tmp-{token}"
    try:
        write(tmp)
        if path.is_dir() and not path.is_symlink():
            # os.replace cannot overwrite a non-empty directory: swap via a side name.
            old = parent / f".{path.name}.old-{token}"
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def _suffix(path: Path, allowed: Sequence[str], what: str) -> str:
    name = path.name.lower()
    for suffix in allowed:
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"cannot write {what} to {path.name!r}: use one of {', '.join(allowed)}")


def _check_scale(scale: Sequence[float] | None, ndim: int) -> list[float] | None:
    if scale is None:
        return None
    values = [float(s) for s in scale]
    if len(values) != ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"scale must hold {ndim} positive numbers, got {list(scale)}")
    return values


def _write_tiff(tmp: Path, array: Any, scale: list[float] | None) -> None:
    import tifffile

    values = np.asarray(array)
    metadata = {} if scale is None else {"scale": scale}
    tifffile.imwrite(tmp, values, compression="zlib", metadata=metadata)


def _write_zarr(tmp: Path, array: Any, scale: list[float] | None) -> None:
    import zarr

    shape = tuple(int(s) for s in array.shape)
    dtype = np.dtype(array.dtype)
    chunks = (1, *shape[1:]) if len(shape) >= 3 else shape
    attributes = {} if scale is None else {"scale": scale}
    target = zarr.create_array(
        store=str(tmp), shape=shape, dtype=dtype, chunks=chunks, attributes=attributes
    )
    if len(shape) == 0 or shape[0] == 0:
        return
    slice_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
    block = max(1, _ZARR_BLOCK_BYTES // slice_bytes)
    for start in range(0, shape[0], block):
        stop = min(shape[0], start + block)
        target[start:stop] = np.asarray(array[start:stop])


def _write_npy(tmp: Path, array: Any, scale: list[float] | None) -> None:
    with open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


_WRITERS = {".tif": _write_tiff, ".tiff": _write_tiff, ".zarr": _write_zarr, ".npy": _write_npy}


def _as_array_like(array: Any) -> Any:
    if all(hasattr(array, attr) for attr in ("shape", "dtype", "__getitem__")):
        return array
    return np.asarray(array)


def _label_values(labels: Any) -> Any:
    """Labels as written: bool becomes uint8, other non-integer dtypes are refused."""
    dtype = np.dtype(labels.dtype)
    if dtype == np.bool_:
        return np.asarray(labels).astype(np.uint8)
    if dtype.kind not in "ui":
        raise ValueError(f"labels must have an integer dtype, got {dtype}")
    return labels


def _numeric_values(array: Any) -> Any:
    if np.dtype(array.dtype).kind not in "buifc":
        raise ValueError(f"cannot write an array of dtype {array.dtype}")
    return array


def _write_checked(
    path: str | Path,
    array: Any,
    scale: Sequence[float] | None,
    allowed: Sequence[str],
    what: str,
    prepare: Callable[[Any], Any],
) -> Path:
    """Check suffix, values (``prepare``) and scale in that order, then write atomically."""
    path = Path(path)
    suffix = _suffix(path, allowed, what)
    values = prepare(_as_array_like(array))
    scale_values = _check_scale(scale, len(values.shape))
    writer = _WRITERS[suffix]
    return atomic_write(path, lambda tmp: writer(tmp, values, scale_values))


def write_labels(path: str | Path, labels: Any, *, scale: Sequence[float] | None = None,
                 geometry: Any = None, axis: Any = None) -> Path:
    """Write an integer label volume atomically.

    Parameters
    ----------
    path : str or Path
        ``.tif/.tiff`` (zlib-compressed, dtype kept exactly) or ``.zarr``
        (an array at the store root, one chunk per slice); with a ``geometry``
        also ``.nii/.nii.gz``, ``.nrrd`` and ``.dcm`` (DICOM-SEG), see
        :mod:`napari_sam2med.io.label_formats`.
    labels : array-like
        Integer or boolean labels (numpy, zarr or dask); bool is stored as uint8.
        With a ``geometry``: ``(Z, Y, X)`` in the source's voxel order.
    scale : sequence of float, optional
        Voxel spacing per axis, stored as ``scale`` metadata.
    geometry : Geometry, optional
        Scanner placement of the image the labels belong to (its shape must
        match); TIFF/Zarr get its spacing as ``scale``.
    axis : Axis or str, optional
        Propagation axis, recorded in NIfTI/NRRD/DICOM-SEG outputs.

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    ValueError
        Unsupported suffix, a non-integer dtype or a bad ``scale``.
    """
    from .label_formats import SCANNER_LABEL_SUFFIXES, scanner_geometry, write_scanner_labels

    suffix = _suffix(Path(path), LABEL_SUFFIXES + SCANNER_LABEL_SUFFIXES, "labels")
    if geometry is not None or suffix in SCANNER_LABEL_SUFFIXES:
        values = _label_values(_as_array_like(labels))
        geometry = scanner_geometry(suffix, values.shape, geometry, _check_scale(scale, len(values.shape)))
        if suffix in SCANNER_LABEL_SUFFIXES:
            return atomic_write(path, lambda tmp: write_scanner_labels(tmp, suffix, values, geometry, axis))
        scale = geometry.spacing if scale is None else scale
    return _write_checked(path, labels, scale, LABEL_SUFFIXES, "labels", _label_values)


def write_array(path: str | Path, array: Any, *, scale: Sequence[float] | None = None) -> Path:
    """Write any numeric array atomically to ``.tif/.tiff``, ``.zarr`` or ``.npy``.

    Parameters
    ----------
    path : str or Path
        Output path; the suffix picks the format.
    array : array-like
        numpy, zarr or dask array of a numeric or bool dtype.
    scale : sequence of float, optional
        Voxel spacing per axis (TIFF and Zarr only).

    Returns
    -------
    Path
        The written path.
    """
    return _write_checked(path, array, scale, ARRAY_SUFFIXES, "an array", _numeric_values)
