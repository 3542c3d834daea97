"""napari open -> paint -> save keeps the scanner geometry (through napari's own open/save)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
nib = pytest.importorskip("nibabel")

from napari_sam2med._reader import GEOMETRY_KEY, overlay_kwargs  # noqa: E402
from napari_sam2med.io.geometry import napari_world  # noqa: E402

WORLD_POINT = np.array([-25.0, 20.0, 60.0])  # RAS mm, inside the oblique test volume


def test_open_paint_save_round_trip(make_napari_viewer, tmp_path, oblique_nifti):
    viewer = make_napari_viewer()
    [image] = viewer.open(str(oblique_nifti), plugin="napari-sam2med")
    source = nib.load(str(oblique_nifti))
    assert image.data.shape == (10, 16, 20)
    np.testing.assert_allclose(image.scale, (2.5, 0.6, 0.8), rtol=1e-6)
    geometry = image.metadata[GEOMETRY_KEY]

    # Where nibabel says the world point is, napari's world_to_data agrees.
    ijk = (np.linalg.inv(source.affine) @ [*WORLD_POINT, 1])[:3]
    data_point = np.asarray(image.world_to_data(napari_world(WORLD_POINT)))
    np.testing.assert_allclose(data_point, ijk[::-1], atol=1e-4)
    voxel = tuple(int(v) for v in np.round(data_point))

    # Paint that voxel in a labels layer laid over the image, save through napari's writer menu path.
    labels = viewer.add_labels(np.zeros(image.data.shape, np.uint8), name="ct labels", **overlay_kwargs(image))
    labels.data[voxel] = 5
    np.testing.assert_allclose(labels.world_to_data(napari_world(WORLD_POINT)), data_point, atol=1e-6)
    viewer.layers.selection = {labels}
    out = tmp_path / "ct_labels.nii.gz"
    written = viewer.layers.save(str(out), selected=True, plugin="napari-sam2med")
    assert [str(p) for p in written] == [str(out)]

    back = nib.load(str(out))
    assert np.array_equal(back.affine, source.affine)
    assert back.header["qform_code"] == source.header["qform_code"] == 1
    assert back.header["sform_code"] == source.header["sform_code"] == 2
    values = np.asarray(back.dataobj)
    assert values[tuple(np.round(ijk).astype(int))] == 5 and values.sum() == 5

    # Reopening the labels gives a layer in the same place.
    [reopened] = viewer.open(str(out), plugin="napari-sam2med", layer_type="labels")
    np.testing.assert_allclose(reopened.world_to_data(napari_world(WORLD_POINT)), data_point, atol=1e-4)
    assert reopened.metadata[GEOMETRY_KEY].same_space(geometry)


def test_save_refuses_labels_moved_off_their_image(make_napari_viewer, tmp_path, oblique_nifti):
    viewer = make_napari_viewer()
    [image] = viewer.open(str(oblique_nifti), plugin="napari-sam2med")
    kwargs = overlay_kwargs(image)
    kwargs["scale"] = (1.0, 1.0, 1.0)  # the user changed the layer's scale
    labels = viewer.add_labels(np.ones(image.data.shape, np.uint8), **kwargs)
    viewer.layers.selection = {labels}
    with pytest.raises(Exception, match="no longer matches the image"):
        viewer.layers.save(str(tmp_path / "x.nii.gz"), selected=True, plugin="napari-sam2med")
    assert not list(tmp_path.glob("*x.nii*"))


def test_dicom_series_opens_in_patient_space_and_saves_as_seg(make_napari_viewer, tmp_path, oblique_dicom):
    hd = pytest.importorskip("highdicom")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(oblique_dicom.folder), plugin="napari-sam2med")
    # Voxel (k, 0, 0) is at ImagePositionPatient of slice k; napari world is (S, P, L) = LPS reversed.
    for k, position in enumerate(oblique_dicom.positions):
        np.testing.assert_allclose(image.data_to_world((k, 0, 0)), position[::-1], atol=1e-6)
    labels = viewer.add_labels(np.zeros(image.data.shape, np.uint8), **overlay_kwargs(image))
    labels.data[4, 3:6, 2:5] = 2
    viewer.layers.selection = {labels}
    out = tmp_path / "labels.dcm"
    viewer.layers.save(str(out), selected=True, plugin="napari-sam2med")
    seg = hd.seg.segread(str(out))
    [frame] = seg.PerFrameFunctionalGroupsSequence
    np.testing.assert_allclose(frame.PlanePositionSequence[0].ImagePositionPatient,
                               oblique_dicom.positions[4], atol=1e-4)


def test_segment_dock_layers_sit_on_the_scanner_image(make_napari_viewer, tmp_path, oblique_nifti):
    """File > Open -> the SAM2 dock's labels/points layers -> File > Save keeps the geometry."""
    from napari.layers import Labels, Points

    viewer = make_napari_viewer()
    [image] = viewer.open(str(oblique_nifti), plugin="napari-sam2med")
    viewer.window.add_plugin_dock_widget("napari-sam2med", "SAM2 segment & propagate")
    [labels] = [layer for layer in viewer.layers if isinstance(layer, Labels)]
    [points] = [layer for layer in viewer.layers if isinstance(layer, Points)]
    world = napari_world(WORLD_POINT)
    voxel_f = np.asarray(image.world_to_data(world))
    for layer in (labels, points):  # a click at a world point lands on the image's voxel
        np.testing.assert_allclose(layer.world_to_data(world), voxel_f, atol=1e-6)
    voxel = tuple(int(v) for v in np.round(voxel_f))
    labels.data[voxel] = 4
    viewer.layers.selection = {labels}
    out = tmp_path / "dock_labels.nii.gz"
    viewer.layers.save(str(out), selected=True, plugin="napari-sam2med")
    source, back = nib.load(str(oblique_nifti)), nib.load(str(out))
    assert np.array_equal(back.affine, source.affine) and back.header["sform_code"] == 2
    ijk = np.round(np.linalg.inv(back.affine) @ [*WORLD_POINT, 1])[:3].astype(int)
    assert np.asarray(back.dataobj)[tuple(ijk)] == 4
