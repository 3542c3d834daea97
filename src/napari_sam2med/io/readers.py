"""Open image volumes from disk as lazy array-likes or ``FrameStack`` objects.

Supported: ``.tif/.tiff`` (via tifffile's zarr store, so slices are read on
demand), ``.npy`` (memory-mapped), ``.zarr`` directories (array, OME-Zarr
multiscale group, or a group with one array), ``.nii/.nii.gz`` (nibabel, read
per slice and returned as ``(Z, Y, X)``), ``.nrrd``, MedSAM2 ``.npz`` (``imgs``)
and DICOM series directories. NIfTI, NRRD, npz and DICOM also give a
:class:`~napari_sam2med.io.geometry.Geometry` (:func:`read_volume`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .dicom import read_dicom_series
from .medical import NIFTI_SUFFIXES, NPZ_SUFFIXES, NRRD_SUFFIXES, nifti_image, read_nifti, read_npz, read_nrrd
from .stack import FrameStack

TIFF_SUFFIXES = (".tif", ".tiff")
SUPPORTED = ".tif, .tiff, .npy, .npz, .zarr, .nii, .nii.gz, .nrrd or a DICOM series directory"


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
    for suffix in (".nii.gz", ".ome.tiff", ".ome.tif", ".ome.zarr", ".seg.dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if Path(name).suffix else name


# -- format readers ----------------------------------------------------------
#: What tifffile / zarr raise for a TIFF that one access path cannot serve (tifffile.TiffFileError and
#: zarr's metadata errors are ValueErrors; unsupported layouts raise NotImplementedError/KeyError/TypeError).
_TIFF_PATH_ERRORS = (ValueError, TypeError, KeyError, NotImplementedError, OSError)


def _read_tiff(path: Path) -> Any:
    import tifffile

    try:
        import zarr

        store = tifffile.imread(path, aszarr=True)
        node = zarr.open(store, mode="r")
        if isinstance(node, zarr.Group):  # pyramidal TIFF: full-resolution level
            node = node["0"]
        return node
    except _TIFF_PATH_ERRORS:
        pass  # not servable as a zarr store: fall back to memmap / full read; real errors surface there
    try:
        return tifffile.memmap(path, mode="r")
    except _TIFF_PATH_ERRORS:
        pass  # compressed or non-contiguous: read it whole
    try:
        return tifffile.imread(path)
    except _TIFF_PATH_ERRORS as exc:
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


# -- public API ----------------------------------------------------------------
def read_volume(path: str | Path) -> tuple[Any, Any]:
    """Open a volume and its scanner geometry.

    Parameters
    ----------
    path : str or Path
        Any format :func:`read_array` accepts.

    Returns
    -------
    tuple
        ``(array, geometry)``; ``geometry`` is a
        :class:`~napari_sam2med.io.geometry.Geometry` for NIfTI, NRRD, npz with
        spacing and positioned DICOM series, else ``None``.
    """
    path = _existing(path)
    if path.is_dir():
        if _is_zarr_dir(path):
            return _read_zarr(path), None
        series = read_dicom_series(path)
        return series.array, series.geometry
    name = _lower_name(path)
    if name.endswith(TIFF_SUFFIXES):
        return _read_tiff(path), None
    if name.endswith(".npy"):
        return _read_npy(path), None
    if _is_nifti(path):
        return read_nifti(path)
    if name.endswith(NPZ_SUFFIXES):
        images, geometry, _ = read_npz(path)
        return images, geometry
    if name.endswith(NRRD_SUFFIXES):
        return read_nrrd(path)
    raise ValueError(f"unsupported file type {path.name!r}: expected {SUPPORTED}")


def read_array(path: str | Path) -> Any:
    """Open a volume as an array-like, lazily where the format allows.

    Parameters
    ----------
    path : str or Path
        ``.tif/.tiff``, ``.npy``, ``.npz`` (MedSAM2 ``imgs``), ``.zarr``
        directory, ``.nii/.nii.gz``, ``.nrrd`` or a DICOM series directory.

    Returns
    -------
    array-like
        zarr array (TIFF, Zarr), memory-mapped ndarray (npy), ndarray (npz,
        NRRD), dask array (OME-Zarr with singleton axes) or ``LazySlices``
        (NIfTI as ``(Z, Y, X)``, DICOM as ``(Z, Y, X)`` with rescale applied).
    """
    return read_volume(path)[0]


def read_geometry(path: str | Path) -> Any:
    """The :class:`~napari_sam2med.io.geometry.Geometry` of a volume file, or ``None``."""
    return read_volume(path)[1]


def read_labels_for(path: str | Path, geometry: Any, shape: tuple[int, ...] | None = None) -> Any:
    """Read a labels volume that must lie on an image's voxel grid.

    Parameters
    ----------
    path : str or Path
        Labels file (any format :func:`read_array` reads).
    geometry : Geometry or None
        The image's geometry; a labels file with its own geometry must match it
        (same shape, affine equal within 1e-3 mm).
    shape : tuple of int, optional
        The image's shape when it has no geometry.

    Raises
    ------
    ValueError
        Shape or placement differ (one line saying how).
    """
    array, own = read_volume(path)
    name = Path(path).name
    expected = geometry.shape if geometry is not None else (None if shape is None else tuple(shape))
    if expected is not None and tuple(array.shape) != tuple(expected):
        raise ValueError(f"labels {name} have shape {tuple(array.shape)}, the image {tuple(expected)}")
    if geometry is not None and own is not None and not own.same_space(geometry, atol=1e-3):
        worst = float(abs(own.affine - geometry.affine).max())
        raise ValueError(f"labels {name} are not on the image's voxel grid (affine differs by up to "
                         f"{worst:.3g} mm); resample them to the image first")
    return array


def open_stack(path: str | Path, **kwargs: Any) -> FrameStack:
    """Open a volume file as a :class:`FrameStack`.

    Parameters
    ----------
    path : str or Path
        Any format :func:`read_array` accepts.
    **kwargs
        Passed to :class:`FrameStack` (``channel_axis``, ``window``,
        ``nan_policy``, ``name``; the name defaults to the file stem). The
        stack's ``geometry`` is the file's (NIfTI, NRRD, npz, DICOM).
    """
    kwargs.setdefault("name", stack_name(path))
    array, geometry = read_volume(path)
    if len(array.shape) == 3 and "channel_axis" not in kwargs:
        if geometry is None:
            geometry = _spacing_geometry(path, array.shape)
        kwargs.setdefault("geometry", geometry)
    return FrameStack(array, **kwargs)


def _spacing_geometry(path: str | Path, shape: tuple[int, ...]) -> Any:
    """Axis-aligned geometry from a TIFF/Zarr voxel size, so NIfTI/NRRD outputs keep it."""
    from .geometry import from_spacing

    try:
        spacing = read_spacing(path)
    except (ValueError, OSError, KeyError):
        return None
    if tuple(spacing) == (1.0, 1.0, 1.0):
        return None  # nothing recorded: no geometry rather than a made-up one
    return from_spacing(shape, spacing, source="spacing")


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
        zooms = nifti_image(path).header.get_zooms()
        x, y, z = (float(v) for v in (tuple(zooms) + (1.0, 1.0, 1.0))[:3])
        return z, y, x
    if name.endswith(NPZ_SUFFIXES + NRRD_SUFFIXES):
        geometry = read_geometry(path)
        return (1.0, 1.0, 1.0) if geometry is None else geometry.spacing
    if name.endswith(TIFF_SUFFIXES):
        return _tiff_spacing(path)
    if name.endswith(".npy"):
        return 1.0, 1.0, 1.0
    raise ValueError(f"unsupported file type {path.name!r}: expected {SUPPORTED}")
