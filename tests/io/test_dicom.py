"""DICOM series: ordering by position, rescale, spacing, lazy reads."""

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from napari_sam2med.io import open_stack, read_array, read_dicom_series, read_spacing  # noqa: E402

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _write_slice(path, pixels, z, instance, series_uid, slope=1.0, intercept=-1024.0):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-10.0, -20.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.6, 0.4]  # (row spacing = y, column spacing = x)
    ds.SliceThickness = 9.9  # deliberately wrong: positions must win
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


@pytest.fixture
def series_dir(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 3000, size=(3, 5, 4)).astype(np.uint16)
    series = generate_uid()
    # Files named in shuffled order; z positions decreasing with instance numbers
    # shuffled too, so only ImagePositionPatient gives the right order.
    plan = [("b.dcm", 2, 5.0, 1), ("c.dcm", 0, -1.0, 3), ("a.dcm", 1, 2.0, 2)]
    for name, index, z, instance in plan:
        _write_slice(tmp_path / name, pixels[index], z, instance, series)
    (tmp_path / "notes.txt").write_text("not dicom")
    return tmp_path, pixels


def test_series_is_sorted_by_position_and_rescaled(series_dir):
    directory, pixels = series_dir
    series = read_dicom_series(directory)
    assert [p.name for p in series.files] == ["c.dcm", "a.dcm", "b.dcm"]
    assert series.array.shape == (3, 5, 4)
    assert series.array.dtype == np.int32
    expected = pixels.astype(np.int32) - 1024
    np.testing.assert_array_equal(np.asarray(series.array), expected)
    assert series.spacing == pytest.approx((3.0, 0.6, 0.4))
    assert read_spacing(directory) == pytest.approx((3.0, 0.6, 0.4))


def test_open_stack_on_dicom_dir_reads_one_slice(series_dir):
    directory, pixels = series_dir
    stack = open_stack(directory)
    assert stack.shape == (3, 5, 4)
    np.testing.assert_array_equal(stack.raw(2), pixels[2].astype(np.int32) - 1024)
    assert np.asarray(read_array(directory)[1:3]).shape == (2, 5, 4)


def test_fractional_rescale_gives_float(tmp_path):
    series = generate_uid()
    pixels = np.arange(6, dtype=np.uint16).reshape(2, 3)
    _write_slice(tmp_path / "0.dcm", pixels, 0.0, 1, series, slope=0.5, intercept=1.0)
    array = read_array(tmp_path)
    assert array.dtype == np.float32
    np.testing.assert_allclose(array[0], pixels * 0.5 + 1.0)


def test_mixed_series_is_rejected(tmp_path):
    pixels = np.zeros((2, 2), np.uint16)
    _write_slice(tmp_path / "a.dcm", pixels, 0.0, 1, generate_uid())
    _write_slice(tmp_path / "b.dcm", pixels, 1.0, 2, generate_uid())
    with pytest.raises(ValueError, match="mixes 2 DICOM series"):
        read_array(tmp_path)
