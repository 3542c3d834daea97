"""Sample data come with their ground truth, and the segment dock shows per-object Dice against a chosen
reference Labels layer (the sample's ground truth is preselected)."""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-sam2med"


def _dice(a, b):  # independent of engine.metrics
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_reference_dice_matches_objects_by_overlap():
    from napari_sam2med._qt.reference_dice import reference_dice

    ref = np.zeros((4, 10, 10), np.int32)
    ref[:, 1:5, 1:5] = 7
    ref[:, 6:9, 6:9] = 2
    pred = np.zeros_like(ref)
    pred[:, 1:5, 1:4] = 1  # overlaps reference 7 only
    pred[2, 6:9, 6:8] = 2  # overlaps reference 2 on one slice
    pred[0, 0, 9] = 5  # overlaps nothing, no reference 5
    rows = reference_dice(pred, ref, (2,))
    assert [(r.obj_id, r.ref_id) for r in rows] == [(1, 7), (2, 2), (5, None)]
    assert rows[0].dice == pytest.approx(_dice(pred == 1, ref == 7))
    assert rows[1].dice == pytest.approx(_dice(pred == 2, ref == 2))
    assert rows[1].slice_dice == pytest.approx(_dice(pred[2] == 2, ref[2] == 2))
    assert rows[2].dice == 0.0
    with pytest.raises(ValueError, match="shape"):
        reference_dice(pred, ref[:2])


def test_samples_bring_their_ground_truth(make_napari_viewer):
    from napari_sam2med._sample_data import synthetic_timeseries, synthetic_volume

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_volume")
    viewer.open_sample(PLUGIN, "synthetic_timeseries")
    for name, make in (("synthetic CT volume", synthetic_volume), ("synthetic time series", synthetic_timeseries)):
        truth = viewer.layers[f"{name} ground truth"]
        assert truth.__class__.__name__ == "Labels" and not truth.visible  # hidden: the user's labels stay in view
        np.testing.assert_array_equal(truth.data, make()[1])
        np.testing.assert_allclose(truth.scale, viewer.layers[name].scale)
        assert set(truth.metadata["objects"]) == {1, 2, 3}


def test_dock_shows_dice_against_the_sample_ground_truth(make_napari_viewer, qtbot, helpers, tiny_model):
    from napari_sam2med._sample_data import synthetic_volume

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_volume")
    widget = helpers.open_dock(viewer, "SAM2 segment & propagate")
    panel = widget.reference_panel
    assert panel.reference_combo.currentText() == "synthetic CT volume ground truth"  # preselected
    own = {layer.name for layer in viewer.layers if "sam2med" in layer.metadata}
    options = {panel.reference_combo.itemText(i) for i in range(panel.reference_combo.count())}
    assert own and not own & options  # the dock's own layers are never a reference
    widget.set_model(tiny_model, "sam2.1-test (random weights)")
    viewer.dims.set_current_step(0, 12)
    helpers.click(widget, 12, 60, 80)  # a click through the dock makes object 1 (random weights: any mask)
    helpers.wait_idle(qtbot, widget)
    _, truth = synthetic_volume()
    labels = widget.state.labels_layer
    labels.data[12][truth[12] == 3] = 2  # object 2: lesion 3 on this slice, as if segmented perfectly there
    widget.rename_object(2, "lesion")
    panel.compute_button.click()
    text = panel.result.text()
    rows = {r.obj_id: r for r in panel.compute()}
    assert rows[2].ref_id == 3
    assert rows[2].slice_dice == pytest.approx(1.0)
    assert rows[2].dice == pytest.approx(_dice(np.asarray(labels.data) == 2, truth == 3))
    assert f"{rows[2].dice:.3f}" in text and "'lesion'" in text and "ground truth" in text
    assert 1 in rows
    panel.reference_combo.setCurrentText("(none)")
    assert panel.compute() is None and "No reference" in panel.result.text()
