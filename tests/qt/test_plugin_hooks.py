"""Manifest, reader/writer round trips and sample data (no Qt needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def test_manifest_validates_and_lists_contributions():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(REPO / "napari.yaml")
    assert manifest.name == "napari-sam2med"
    widgets = {w.display_name: w.command for w in manifest.contributions.widgets}
    assert widgets["SAM2 segment & propagate"] == "napari-sam2med.segment_widget"
    assert widgets["SAM2Flow"] == "napari-sam2med.flow_widget"
    assert widgets["OCTA (SAM-OCTA2)"] == "napari-sam2med.octa_widget"
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands["napari-sam2med.flow_widget"] == "napari_sam2med._qt.flow_widget:FlowWidget"
    assert commands["napari-sam2med.octa_widget"] == "napari_sam2med._qt.octa_widget:OctaWidget"
    # every command resolves to a callable: nothing is skipped (a skip here hid a broken dock)
    import importlib

    for target in commands.values():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), target
    assert (REPO / "src" / "napari_sam2med" / "napari.yaml").resolve() == (REPO / "napari.yaml").resolve()
    # `npe2 validate` on the manifest is run in tests/test_packaging.py


def test_sample_data_shapes_and_ground_truth():
    from napari_sam2med import _sample_data as sd

    [(image, meta, kind), (_, truth_meta, truth_kind)] = sd.make_synthetic_volume()  # + its ground truth
    assert image.shape == (24, 128, 128) and image.dtype == np.int16 and kind == "image"
    assert truth_kind == "labels" and truth_meta["scale"] == meta["scale"] and not truth_meta["visible"]
    assert meta["scale"] == sd.VOLUME_SCALE and meta["metadata"]["spacing_mm"] == sd.VOLUME_SPACING
    [(movie, _, _), _] = sd.make_synthetic_timeseries()
    assert movie.shape == (24, 128, 128) and movie.dtype == np.uint16
    img, gt = sd.synthetic_volume()
    assert set(np.unique(gt)) == {0, 1, 2, 3}
    assert img[gt == 2].mean() > img[gt == 1].mean() > img[(gt == 0) & (img > -500)].mean()
    mov, tgt = sd.synthetic_timeseries()
    areas = [(tgt[t] == 3).sum() for t in (0, 23)]
    assert areas[1] > areas[0]  # blob 3 grows
    centre = [np.argwhere(tgt[t] == 1).mean(axis=0) for t in (0, 23)]
    assert np.linalg.norm(centre[1] - centre[0]) > 10  # and blobs move
    assert mov[tgt > 0].mean() > 3 * mov[tgt == 0].mean()
    with pytest.raises(ValueError, match="shape"):
        sd.synthetic_volume((4, 4))


@pytest.mark.parametrize("suffix", [".tif", ".zarr", ".nii.gz", ".nii"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint16])
def test_labels_round_trip_keeps_dtype_and_scale(tmp_path, suffix, dtype):
    from napari_sam2med._reader import get_reader
    from napari_sam2med._writer import write_labels_layer

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(5, 12, 10)).astype(dtype)
    labels[0, 0, 0] = 255 if dtype == np.uint8 else 300
    path = tmp_path / f"case_labels{suffix}"
    [written] = write_labels_layer(str(path), labels, {"scale": (3.0, 0.5, 0.7)})
    reader = get_reader(written)
    assert reader is not None
    [(data, meta, kind)] = reader(written)
    assert kind == "labels"
    back = np.asarray(data)
    assert back.dtype == labels.dtype
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_allclose(meta["scale"], (3.0, 0.5, 0.7))


def test_reader_opens_images_and_rejects_others(tmp_path):
    import tifffile

    from napari_sam2med._reader import get_reader

    volume = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    tifffile.imwrite(tmp_path / "ct.tif", volume)
    [(data, meta, kind)] = get_reader(str(tmp_path / "ct.tif"))(str(tmp_path / "ct.tif"))
    assert kind == "image" and meta["name"] == "ct"
    np.testing.assert_array_equal(np.asarray(data), volume)
    (tmp_path / "notes.txt").write_text("hi")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path)) is None  # a folder without DICOM files


def test_reader_opens_dicom_series(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from napari_sam2med._reader import get_reader

    series = generate_uid()
    for z in range(3):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(tmp_path / f"s{z}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, series
        ds.Modality, ds.Rows, ds.Columns = "CT", 8, 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 2.0 * z], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness, ds.InstanceNumber = [0.5, 0.5], 2.0, z + 1
        ds.PixelData = np.full((8, 8), z * 10, np.uint16).tobytes()
        ds.save_as(str(tmp_path / f"s{z}.dcm"), enforce_file_format=True)
    reader = get_reader(str(tmp_path))
    assert reader is not None
    [(data, meta, kind)] = reader(str(tmp_path))
    assert np.asarray(data).shape == (3, 8, 8) and kind == "image"
    assert np.asarray(data)[2].mean() == 20
    np.testing.assert_allclose(meta["scale"], (2.0, 0.5, 0.5))
