"""Read a DICOM series directory as a lazy ``(Z, Y, X)`` volume plus spacing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .lazy import LazySlices


@dataclass(frozen=True)
class _SliceHeader:
    path: Path
    series_uid: str
    rows: int
    cols: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    instance: int | None
    slope: float
    intercept: float
    pixel_spacing: tuple[float, float] | None
    thickness: float | None
    pixel_dtype: np.dtype
    frame_of_reference_uid: str | None = None


@dataclass(frozen=True)
class DicomSeries:
    """A sorted DICOM series.

    Attributes
    ----------
    array : LazySlices
        ``(Z, Y, X)`` volume with RescaleSlope/Intercept applied, read per slice.
    spacing : tuple of float
        ``(z, y, x)`` voxel spacing in mm (1.0 where the headers say nothing).
    files : tuple of Path
        Slice files in volume order.
    geometry : Geometry or None
        Scanner placement from ImagePositionPatient / ImageOrientationPatient /
        PixelSpacing, ``None`` when the files carry no positions.
    """

    array: LazySlices
    spacing: tuple[float, float, float]
    files: tuple[Path, ...]
    geometry: Any = None


def _floats(value, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == count else None


def _pixel_dtype(ds) -> np.dtype:
    bits = int(getattr(ds, "BitsAllocated", 16))
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32):
        raise ValueError(f"{ds.filename}: unsupported BitsAllocated={bits}")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def _read_header(path: Path) -> _SliceHeader | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError):
        return None
    if "Rows" not in ds or "Columns" not in ds:
        return None  # DICOMDIR, structured reports, ...
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1:
        raise ValueError(f"{path}: colour DICOM (SamplesPerPixel>1) is not supported")
    pixel_spacing = _floats(getattr(ds, "PixelSpacing", None), 2)
    thickness = getattr(ds, "SliceThickness", None)
    instance = getattr(ds, "InstanceNumber", None)
    return _SliceHeader(
        path=path,
        series_uid=str(getattr(ds, "SeriesInstanceUID", "")),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        position=_floats(getattr(ds, "ImagePositionPatient", None), 3),
        orientation=_floats(getattr(ds, "ImageOrientationPatient", None), 6),
        instance=None if instance in (None, "") else int(instance),
        slope=float(getattr(ds, "RescaleSlope", 1.0) or 1.0),
        intercept=float(getattr(ds, "RescaleIntercept", 0.0) or 0.0),
        pixel_spacing=pixel_spacing,
        thickness=None if thickness in (None, "") else float(thickness),
        pixel_dtype=_pixel_dtype(ds),
        frame_of_reference_uid=str(getattr(ds, "FrameOfReferenceUID", "")) or None,
    )


def _slice_normal(headers: list[_SliceHeader]) -> np.ndarray:
    orientation = headers[0].orientation
    if orientation is None:
        return np.array([0.0, 0.0, 1.0])
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def _output_dtype(headers: list[_SliceHeader]) -> np.dtype:
    rescales = {(h.slope, h.intercept) for h in headers}
    if rescales == {(1.0, 0.0)}:
        return np.result_type(*[h.pixel_dtype for h in headers])
    if all(float(s).is_integer() and float(b).is_integer() for s, b in rescales):
        return np.dtype(np.int32)
    return np.dtype(np.float32)


def read_dicom_series(directory: str | Path) -> DicomSeries:
    """Read a directory holding one DICOM series.

    Slices are ordered by their position along the slice normal
    (ImagePositionPatient, ImageOrientationPatient), else by InstanceNumber,
    else by file name. RescaleSlope/Intercept are applied per slice.

    Parameters
    ----------
    directory : str or Path
        Folder with the series' files (other, non-DICOM files are ignored).

    Returns
    -------
    DicomSeries
        Lazy ``(Z, Y, X)`` array, ``(z, y, x)`` spacing and sorted files.
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"no such DICOM directory: {directory}")
    if not directory.is_dir():
        raise ValueError(f"not a directory: {directory}")
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    headers = [h for h in (_read_header(p) for p in files) if h is not None]
    if not headers:
        raise ValueError(f"{directory} holds no readable DICOM image files")
    series = {h.series_uid for h in headers}
    if len(series) > 1:
        raise ValueError(f"{directory} mixes {len(series)} DICOM series; put each in its own folder")
    shapes = {(h.rows, h.cols) for h in headers}
    if len(shapes) > 1:
        raise ValueError(f"{directory}: slices have different sizes {sorted(shapes)}")

    _check_positions(directory, headers)
    z_spacing = None
    if all(h.position is not None for h in headers):
        normal = _slice_normal(headers)
        depth = {h.path: float(np.dot(h.position, normal)) for h in headers}
        headers.sort(key=lambda h: (depth[h.path], h.path.name))
        steps = np.diff([depth[h.path] for h in headers])
        if steps.size and np.median(steps) > 0:
            z_spacing = float(np.median(steps))
    elif all(h.instance is not None for h in headers):
        headers.sort(key=lambda h: (h.instance, h.path.name))
    if z_spacing is None:
        z_spacing = headers[0].thickness or 1.0
    y_spacing, x_spacing = headers[0].pixel_spacing or (1.0, 1.0)

    dtype = _output_dtype(headers)
    ordered = tuple(headers)

    def read_slice(i: int) -> np.ndarray:
        import pydicom

        header = ordered[i]
        try:
            pixels = pydicom.dcmread(header.path).pixel_array
        except Exception as exc:  # pydicom raises many types for bad pixel data
            raise ValueError(f"cannot decode pixel data of {header.path}: {exc}") from exc
        if (header.slope, header.intercept) == (1.0, 0.0):
            return pixels.astype(dtype, copy=False)
        return (pixels.astype(np.float64) * header.slope + header.intercept).astype(dtype)

    array = LazySlices(read_slice, len(ordered), (headers[0].rows, headers[0].cols), dtype)
    spacing = (float(z_spacing), float(y_spacing), float(x_spacing))
    files = tuple(h.path for h in ordered)
    return DicomSeries(array=array, spacing=spacing, files=files,
                       geometry=_series_geometry(directory, ordered, array.shape))


def _check_positions(directory: Path, headers: list[_SliceHeader]) -> None:
    """Refuse series whose slices disagree on geometry (one line each)."""
    missing = sum(h.position is None for h in headers)
    if 0 < missing < len(headers):
        raise ValueError(
            f"{directory}: {missing} of {len(headers)} DICOM slices lack ImagePositionPatient; "
            "cannot place the volume"
        )
    orientations = {tuple(np.round(h.orientation, 4)) for h in headers if h.orientation is not None}
    if len(orientations) > 1:
        raise ValueError(f"{directory}: slices have {len(orientations)} different ImageOrientationPatient "
                         "values (mixed series?); put each series in its own folder")
    frames = {h.frame_of_reference_uid for h in headers}
    if len(frames) > 1:
        raise ValueError(f"{directory}: slices belong to {len(frames)} frames of reference (mixed series)")


def _series_geometry(directory: Path, ordered: tuple[_SliceHeader, ...], shape: tuple) -> Any:
    """Geometry from the sorted headers, or ``None`` when positions/orientation are absent."""
    from .geometry import from_dicom_planes

    first = ordered[0]
    if first.position is None or first.orientation is None:
        return None
    try:
        return from_dicom_planes(
            [h.position for h in ordered], first.orientation, first.pixel_spacing or (1.0, 1.0),
            shape, frame_of_reference_uid=first.frame_of_reference_uid,
            series_instance_uid=first.series_uid or None,
            source_files=tuple(str(h.path) for h in ordered),
        )
    except ValueError as err:
        raise ValueError(f"{directory}: {err}") from None
