"""Open image volumes from disk as lazy array-likes or ``FrameStack`` objects.

Supported: ``.tif/.tiff`` (via tifffile's zarr store, so slices are read on
demand), ``.npy`` (memory-mapped), ``.zarr`` directories (array, OME-Zarr
multiscale group, or a group with one array), ``.nii/.nii.gz`` (nibabel, read
per slice and returned as ``(Z, Y, X)``) and DICOM series directories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .dicom import read_dicom_series
from .lazy import LazySlices
from .stack import FrameStack

TIFF_SUFFIXES = (".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED = ".tif, .tiff, .npy, .zarr, .nii, .nii.gz or a DICOM series directory"


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    return path


def _lower_name(path: Path) -> str:
    return path.name.lower()


def _is_nifti(path: Path) -> bool:
    return _lower_name(path).endswith(NIFTI_SUFFIXES)


def _is_zarr_dir(path: Path) -> bool:
    markers = ("zarr.json", ".zarray", ".zgroup")
    return path.suffix.lower() == ".zarr" or any((path / m).exists() for m in markers)


def stack_name(path: str | Path) -> str:
    """Display name for a volume file: its name without image suffixes."""
    name = Path(path).name
    for suffix in (".nii.gz", ".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if Path(name).suffix else name


# -- format readers ----------------------------------------------------------
def _read_tiff(path: Path) -> Any:
    import tifffile

    try:
        import zarr

        store = tifffile.imread(path, aszarr=True)
        node = zarr.open(store, mode="r")
        if isinstance(node, zarr.Group):  # pyramidal TIFF: full-resolution level
            node = node["0"]
        return node
    except Exception:
        pass  # fall back to memmap / full read below; real errors surface there
    try:
        return tifffile.memmap(path, mode="r")
    except Exception:
        pass
    try:
        return tifffile.imread(path)
    except Exception as exc:
        raise ValueError(f"cannot read TIFF {path}: {exc}") from exc


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"cannot read .npy file {path}: {exc}") from exc


def _multiscales(attrs: dict) -> list | None:
    if "multiscales" in attrs:
        return attrs["multiscales"]
    ome = attrs.get("ome")
    return ome.get("multiscales") if isinstance(ome, dict) else None


def _drop_singleton_leading_axes(array: Any) -> Any:
    """OME-Zarr images are 5D (t, c, z, y, x); drop size-1 axes lazily down to 3D."""
    if array.ndim <= 3 or not any(s == 1 for s in array.shape[:-3]):
        return array
    import dask.array as da

    lazy = da.from_zarr(array)
    key = tuple(0 if (ax < array.ndim - 3 and s == 1) else slice(None)
                for ax, s in enumerate(array.shape))
    return lazy[key]


def _read_zarr(path: Path) -> Any:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ValueError(f"cannot open zarr store {path}: {exc}") from exc
    if not isinstance(node, zarr.Group):
        return node
    multiscales = _multiscales(dict(node.attrs))
    if multiscales:
        try:
            dataset = multiscales[0]["datasets"][0]["path"]
            return _drop_singleton_leading_axes(node[dataset])
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"malformed OME-Zarr multiscales metadata in {path}: {exc}") from exc
    arrays = [name for name, _ in node.arrays()]
    if len(arrays) != 1:
        found = ", ".join(arrays) or "none"
        raise ValueError(f"zarr group {path} must hold exactly one array, found: {found}")
    return node[arrays[0]]


def _nifti_image(path: Path) -> Any:
    import nibabel

    try:
        return nibabel.load(str(path))
    except Exception as exc:
        raise ValueError(f"cannot read NIfTI {path}: {exc}") from exc


def _read_nifti(path: Path) -> LazySlices:
    proxy = _nifti_image(path).dataobj
    shape = tuple(proxy.shape)
    if len(shape) > 3 and all(s == 1 for s in shape[3:]):
        extra = (0,) * (len(shape) - 3)
    elif len(shape) == 3:
        extra = ()
    else:
        raise ValueError(f"NIfTI {path} has shape {shape}; expected a 3D volume (X, Y, Z)")
    try:
        dtype = np.asarray(proxy[(slice(0, 1),) * len(shape)]).dtype
    except Exception as exc:
        raise ValueError(f"cannot read NIfTI data of {path}: {exc}") from exc

    def read_slice(z: int) -> np.ndarray:
        # nibabel order is (X, Y, Z): plane z is (X, Y), transposed to (Y, X).
        return np.asarray(proxy[(slice(None), slice(None), z, *extra)]).T

    return LazySlices(read_slice, shape[2], (shape[1], shape[0]), dtype)


# -- public API ----------------------------------------------------------------
def read_array(path: str | Path) -> Any:
    """Open a volume as an array-like, lazily where the format allows.

    Parameters
    ----------
    path : str or Path
        ``.tif/.tiff``, ``.npy``, ``.zarr`` directory, ``.nii/.nii.gz`` or
        a DICOM series directory.

    Returns
    -------
    array-like
        zarr array (TIFF, Zarr), memory-mapped ndarray (npy), dask array
        (OME-Zarr with singleton axes) or ``LazySlices`` (NIfTI as
        ``(Z, Y, X)``, DICOM as ``(Z, Y, X)`` with rescale applied).
    """
    path = _existing(path)
    if path.is_dir():
        if _is_zarr_dir(path):
            return _read_zarr(path)
        return read_dicom_series(path).array
    name = _lower_name(path)
    if name.endswith(TIFF_SUFFIXES):
        return _read_tiff(path)
    if name.endswith(".npy"):
        return _read_npy(path)
    if _is_nifti(path):
        return _read_nifti(path)
    raise ValueError(f"unsupported file type {path.name!r}: expected {SUPPORTED}")


def open_stack(path: str | Path, **kwargs: Any) -> FrameStack:
    """Open a volume file as a :class:`FrameStack`.

    Parameters
    ----------
    path : str or Path
        Any format :func:`read_array` accepts.
    **kwargs
        Passed to :class:`FrameStack` (``channel_axis``, ``window``,
        ``nan_policy``, ``name``; the name defaults to the file stem).
    """
    kwargs.setdefault("name", stack_name(path))
    return FrameStack(read_array(path), **kwargs)


def _tiff_spacing(path: Path) -> tuple[float, float, float]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            for meta in tif.shaped_metadata or ():
                scale = meta.get("scale")
                if scale is not None and len(scale) >= 3:
                    return tuple(float(s) for s in scale[-3:])
            ij = tif.imagej_metadata or {}
            tags = tif.pages[0].tags
            spacing = [float(ij.get("spacing", 1.0)), 1.0, 1.0]
            for axis, tag in ((1, "YResolution"), (2, "XResolution")):
                if tag in tags and ij:
                    num, den = tags[tag].value
                    if num > 0:
                        spacing[axis] = den / num
            return tuple(spacing)
    except Exception as exc:
        raise ValueError(f"cannot read TIFF {path}: {exc}") from exc


def _zarr_spacing(path: Path) -> tuple[float, float, float]:
    import zarr

    node = zarr.open(str(path), mode="r")
    attrs = dict(node.attrs)
    scale = attrs.get("scale")
    multiscales = _multiscales(attrs)
    if scale is None and multiscales:
        for transform in multiscales[0]["datasets"][0].get("coordinateTransformations", []):
            if transform.get("type") == "scale":
                scale = transform["scale"]
    if scale is not None and len(scale) >= 3:
        return tuple(float(s) for s in scale[-3:])
    return 1.0, 1.0, 1.0


def read_spacing(path: str | Path) -> tuple[float, float, float]:
    """Voxel spacing ``(z, y, x)`` recorded in a volume file.

    NIfTI zooms, DICOM PixelSpacing and slice positions, ImageJ TIFF
    resolution and spacing, our own ``scale`` metadata (TIFF and Zarr written
    by :func:`write_labels`) and OME-Zarr scale transforms are understood;
    unknown spacing is 1.0.
    """
    path = _existing(path)
    if path.is_dir():
        if _is_zarr_dir(path):
            return _zarr_spacing(path)
        return read_dicom_series(path).spacing
    name = _lower_name(path)
    if _is_nifti(path):
        zooms = _nifti_image(path).header.get_zooms()
        x, y, z = (float(v) for v in (tuple(zooms) + (1.0, 1.0, 1.0))[:3])
        return z, y, x
    if name.endswith(TIFF_SUFFIXES):
        return _tiff_spacing(path)
    if name.endswith(".npy"):
        return 1.0, 1.0, 1.0
    raise ValueError(f"unsupported file type {path.name!r}: expected {SUPPORTED}")
