"""Label writers that keep the scanner geometry: NIfTI, NRRD and DICOM-SEG.

All go through :func:`napari_sam2med.io.writers.atomic_write` (reached via
:func:`napari_sam2med.io.write_labels` with ``geometry=``). Labels are given in
the source's voxel order ``(Z, Y, X)``; the geometry decides where they sit.

What is recorded with the output (``axis`` = the propagation direction):

- NIfTI: the source header is copied (so affine, qform/sform fields and codes,
  units are bit-identical); data type, shape and scaling are the labels';
  ``intent_code`` = NIFTI_INTENT_LABEL, ``descrip`` = ``"sam2med labels axis=<axis>"``.
  Sources without a NIfTI header get the geometry's affine with its codes.
- NRRD: ``space`` left-posterior-superior, directions/origin, and a
  ``sam2med_axis`` key.
- DICOM-SEG: see :mod:`napari_sam2med.io.dicom_seg`.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import LPS_FROM_RAS, Geometry

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SCANNER_LABEL_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".dcm")
#: NIfTI ``descrip`` is 80 bytes.
_DESCRIP_BYTES = 80


def describe_axis(axis: Any) -> str:
    """What is stored as the labels' description, e.g. ``"sam2med labels axis=coronal"``."""
    name = getattr(axis, "value", axis)
    return "sam2med labels" + (f" axis={name}" if name else "")


def _nifti_header(geometry: Geometry) -> Any:
    import nibabel as nib

    if geometry.nifti_header is None:
        return None
    cls = nib.Nifti2Header if len(geometry.nifti_header) == 540 else nib.Nifti1Header
    return cls(binaryblock=geometry.nifti_header)


def nifti_bytes(labels: np.ndarray, geometry: Geometry, axis: Any = None, gz: bool = False) -> bytes:
    """The NIfTI file content for ``labels`` ``(Z, Y, X)`` in ``geometry``'s space."""
    import nibabel as nib

    geometry.check_labels(labels.shape)
    values = np.ascontiguousarray(np.asarray(labels).transpose(2, 1, 0))  # (Z,Y,X) -> NIfTI (X,Y,Z)
    header = _nifti_header(geometry)
    if header is not None:
        image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        header.set_data_shape(values.shape)
        header.set_data_dtype(values.dtype)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"], header["cal_max"] = 0, 0
        # affine=None: nibabel keeps the copied qform/sform fields untouched.
        image = image_class(values, None, header=header)
    else:
        affine = geometry.nifti_affine
        image = nib.Nifti1Image(values, affine)
        image.header.set_data_dtype(values.dtype)
        image.set_qform(affine, code=int(geometry.qform_code))
        image.set_sform(affine, code=int(geometry.sform_code))
        image.header.set_xyzt_units("mm")
    image.header.set_intent("label")
    image.header["descrip"] = describe_axis(axis).encode()[:_DESCRIP_BYTES - 1]
    payload = image.to_bytes()
    return gzip.compress(payload, compresslevel=6) if gz else payload


def write_nifti_labels(tmp: Path, labels: np.ndarray, geometry: Geometry, axis: Any, gz: bool) -> None:
    """Write the NIfTI bytes to ``tmp`` (bytes, not ``nib.save``: the temporary name has no suffix)."""
    tmp.write_bytes(nifti_bytes(labels, geometry, axis, gz))


def write_nrrd_labels(tmp: Path, labels: np.ndarray, geometry: Geometry, axis: Any) -> None:
    """NRRD in LPS (3D Slicer's space) with the geometry's directions and origin."""
    import nrrd

    geometry.check_labels(labels.shape)
    lps = LPS_FROM_RAS @ geometry.affine
    header = {
        "space": "left-posterior-superior",
        # Fastest axis first: (x, y, z) columns of our (z, y, x) affine.
        "space directions": lps[:3, :3].T[::-1].tolist(),
        "space origin": lps[:3, 3].tolist(),
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        "sam2med_axis": str(getattr(axis, "value", axis) or ""),
    }
    with open(tmp, "wb") as handle:
        nrrd.write(handle, np.ascontiguousarray(labels), header, index_order="C")


def scanner_geometry(suffix: str, shape: tuple, geometry: Geometry | None,
                     scale: Any = None) -> Geometry:
    """The geometry labels of ``shape`` are written in, checked against the output format.

    Without a source geometry, NIfTI/NRRD get an axis-aligned one from ``scale``
    (DICOM axial convention, see :func:`~napari_sam2med.io.geometry.from_spacing`);
    a DICOM-SEG needs the source DICOM series. A shape that differs from the
    source image's raises ``ValueError``.
    """
    from .geometry import from_spacing

    if geometry is None:
        if suffix == ".dcm":
            raise ValueError("a DICOM-SEG (.dcm) output needs a DICOM series as input")
        if len(shape) != 3:
            raise ValueError(f"{suffix} labels must be 3D (Z, Y, X), got shape {tuple(shape)}")
        return from_spacing(shape, scale if scale is not None else (1.0, 1.0, 1.0))
    geometry.check_labels(shape)
    if suffix == ".dcm" and (geometry.source != "dicom" or not geometry.source_files):
        raise ValueError(f"a DICOM-SEG (.dcm) output needs a DICOM series as input, "
                         f"not a {geometry.source} image; write .nii.gz or .nrrd instead")
    return geometry


def write_scanner_labels(tmp: Path, suffix: str, labels: Any, geometry: Geometry, axis: Any = None) -> None:
    """Write ``labels`` in ``geometry``'s space to ``tmp`` in the format of ``suffix``."""
    values = np.asarray(labels)
    if suffix in NIFTI_SUFFIXES:
        write_nifti_labels(tmp, values, geometry, axis, gz=suffix == ".nii.gz")
    elif suffix == ".nrrd":
        write_nrrd_labels(tmp, values, geometry, axis)
    elif suffix == ".dcm":
        from .dicom_seg import write_dicom_seg

        write_dicom_seg(tmp, values, geometry, axis)
    else:  # pragma: no cover - callers check the suffix first
        raise ValueError(f"no scanner-space label writer for {suffix!r}")
