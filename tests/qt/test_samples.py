"""Sample data opened through napari's File > Open Sample path: consistent axes, and the capillary video."""

from __future__ import annotations

import numpy as np

PLUGIN = "napari-sam2med"


def test_all_samples_together_keep_one_slice_per_step(make_napari_viewer, helpers):
    viewer = make_napari_viewer()
    for key in ("synthetic_volume", "synthetic_timeseries", "capillary_video"):
        viewer.open_sample(PLUGIN, key)
    images = [layer for layer in viewer.layers if layer.__class__.__name__ == "Image"]
    assert len(images) == 3 and all(layer.data.shape[0] == 24 for layer in images)
    # the slider runs over 24 slices (not 0..57 from a merged 2.5 mm step) and is named for what it is
    assert viewer.dims.nsteps[0] == 24
    assert viewer.dims.axis_labels[0] == "slice"
    widget = helpers.open_dock(viewer, "SAM2 segment & propagate")
    combo = widget.image_panel.image_combo
    combo.setCurrentIndex(combo.findText("synthetic CT volume"))
    assert "slice (24 slices)" in widget.image_panel.axis_combo.currentText()
    volume = viewer.layers["synthetic CT volume"]
    np.testing.assert_allclose(volume.metadata["spacing_mm"], (2.5, 0.8, 0.8))
    np.testing.assert_allclose(volume.scale, (1.0, 0.32, 0.32))  # keeps the 3D proportions


def test_capillary_sample_gives_the_flow_dock_a_subject(make_napari_viewer, helpers):
    from napari_sam2med._qt.flow_widget import PROMPTS_NAME, prompts_from_points
    from napari_sam2med._sample_data import synthetic_capillary_video

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "capillary_video")
    truth = synthetic_capillary_video()
    video = viewer.layers["synthetic capillary video"]
    np.testing.assert_array_equal(video.data, truth.frames)
    assert video.data.shape == (24, 128, 128) and truth.speeds.max() > 1.0  # cells really move
    w = helpers.open_dock(viewer, "SAM2Flow")
    assert w.video_panel.video_combo.currentText() == "synthetic capillary video"
    rois = prompts_from_points(viewer.layers[PROMPTS_NAME])
    assert [r.id for r in rois] == sorted(int(i) for i in np.unique(truth.vessel_ids) if i > 0)
    for roi in rois:  # positive points lie on their own vessel
        for (r, c), label in zip(roi.points, roi.labels):
            if label == 1:
                assert truth.vessel_ids[int(round(r)), int(round(c))] == roi.id
    assert w.prompts_layer() is viewer.layers[PROMPTS_NAME]  # the dock reuses the sample's prompts
