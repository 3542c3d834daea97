"""Builders of synthetic scanner-space volumes for the geometry tests (oblique NIfTI, oblique DICOM)."""

from __future__ import annotations

import numpy as np

#: ~20 degrees about two axes, anisotropic voxels, a non-zero origin (NIfTI (i, j, k) order).
ZOOMS_IJK = (0.8, 0.6, 2.5)
ORIGIN_RAS = (-31.5, 14.25, 52.0)
SHAPE_IJK = (20, 16, 10)  # NIfTI (X, Y, Z); our arrays are (Z, Y, X) = (10, 16, 20)


def rotation(ax_deg: float = 20.0, ay_deg: float = 20.0) -> np.ndarray:
    """Rotation about x by ``ax_deg``, then about y by ``ay_deg``."""
    a, b = np.radians(ax_deg), np.radians(ay_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


def oblique_affine() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation() @ np.diag(ZOOMS_IJK)
    affine[:3, 3] = ORIGIN_RAS
    return affine


def write_oblique_nifti(path, affine=None, qform_code=1, sform_code=2, data=None):
    """An int16 NIfTI with qform and sform set (different codes, to see both kept)."""
    import nibabel as nib

    affine = oblique_affine() if affine is None else affine
    if data is None:
        rng = np.random.default_rng(0)
        data = rng.integers(0, 1000, SHAPE_IJK).astype(np.int16)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
    return path


CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_dicom_series(directory, n_slices=6, rows=12, cols=10, spacing=2.0, pixel_spacing=(0.7, 0.5),
                       origin=(-40.0, 25.0, 110.0), drop_position_of=None, gap_after=None):
    """An oblique CT series (files named in shuffled order); returns positions in volume order.

    The row/column directions are the first two columns of :func:`rotation`, so the
    slices are tilted ~20 degrees about two axes; slices are stacked along their normal.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rot = rotation()
    row_dir, col_dir = rot[:, 0], rot[:, 1]
    normal = np.cross(row_dir, col_dir)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    positions = []
    order = np.random.default_rng(1).permutation(n_slices)
    for k in range(n_slices):
        offset = k * spacing + (spacing if gap_after is not None and k > gap_after else 0.0)
        position = np.asarray(origin) + offset * normal
        positions.append(position)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = directory / f"img{order[k]:03d}.dcm"
        ds = FileDataset(str(name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CT_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Geometry", "G1", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "A1", "S1"
        ds.ReferringPhysicianName, ds.Manufacturer = "", "synthetic"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, int(order[k]) + 1
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        if drop_position_of != k:
            ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = spacing
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = np.full((rows, cols), 1000 + 10 * k, np.uint16).tobytes()
        pydicom.dcmwrite(str(name), ds, enforce_file_format=True)
    return np.asarray(positions), rot
