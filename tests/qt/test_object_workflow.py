"""The annotation workflow: object list (select, rename, hide, delete), commit, messages, speed hint."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt


def _two_objects(seg, qtbot, helpers):
    viewer, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    widget.prompt_panel.new_object_button.click()
    helpers.click(widget, 6, 44, 44)
    helpers.wait_idle(qtbot, widget)
    labels = widget.state.labels_layer.data  # random weights: make sure both objects have pixels
    labels[5, :8, :8] = 1
    labels[5, 40:48, 40:48] = 2
    return viewer, widget


def _ids(widget):
    table = widget.object_panel.table
    return [int(table.item(i, 0).text()) for i in range(table.rowCount())]


def test_object_list_shows_select_rename_hide(seg, qtbot, helpers):
    viewer, widget = _two_objects(seg, qtbot, helpers)
    table = widget.object_panel.table
    assert _ids(widget) == [1, 2]
    assert table.item(0, 2).text() == "6" and table.item(1, 2).text() == "6"  # prompted on slice 6
    # the id cell is painted in the object's label colour
    from napari_sam2med._qt.object_list import object_color

    rgba = object_color(widget.state.labels_layer, 2)
    assert table.item(1, 0).background().color().getRgbF()[:3] == tuple(np.float32(rgba[:3]).tolist()) or \
        np.allclose(table.item(1, 0).background().color().getRgbF()[:3], rgba[:3], atol=0.01)
    table.selectRow(0)  # select -> it becomes the current object
    assert widget.current_object() == 1 and widget.state.labels_layer.selected_label == 1
    table.item(0, 1).setText("liver")  # rename in place
    assert widget.state.objects[1].name == "liver"
    assert table.item(0, 1).text() == "liver"
    table.item(1, 4).setCheckState(Qt.CheckState.Unchecked)  # hide object 2
    assert widget.state.objects[2].hidden
    colormap = widget.state.labels_layer.colormap
    assert np.asarray(colormap.map(np.array([2]))).reshape(-1)[3] == 0  # transparent
    assert np.asarray(colormap.map(np.array([1]))).reshape(-1)[3] > 0
    helpers.wait_idle(qtbot, widget)
    before = np.asarray(widget.state.labels_layer.data) == 2
    session = widget.state.session
    asked = []
    real = session.propagate

    def recording(**kwargs):
        asked.append(kwargs["obj_ids"])
        return real(**kwargs)

    session.propagate = recording
    widget.propagate()  # a hidden object is left out of propagation, and keeps its labels
    helpers.wait_idle(qtbot, widget)
    assert asked == [[1]]
    labels = np.asarray(widget.state.labels_layer.data)
    np.testing.assert_array_equal(labels == 2, before)
    assert "'liver'" in widget.status.text() or "Propagation done" in widget.status.text()
    table.item(1, 4).setCheckState(Qt.CheckState.Checked)
    assert not widget.state.objects[2].hidden
    assert np.asarray(widget.state.labels_layer.colormap.map(np.array([2]))).reshape(-1)[3] > 0


def test_delete_object_removes_labels_and_prompts_undoably(seg, qtbot, helpers):
    viewer, widget = _two_objects(seg, qtbot, helpers)
    labels = widget.state.labels_layer
    before = np.asarray(labels.data).copy()
    assert (before == 1).any() and (before == 2).any()
    widget.object_panel.table.selectRow(0)
    widget.object_panel.delete_button.click()
    after = np.asarray(labels.data)
    assert not (after == 1).any()
    np.testing.assert_array_equal(after == 2, before == 2)  # the other object is untouched
    assert 1 not in widget.state.points_layer.features["obj_id"].tolist()
    assert 1 not in widget.state.session.prompts.object_ids or not widget.state.session.prompts.slices(1)
    assert _ids(widget) == [2]
    widget.undo()  # the labels come back in one step
    np.testing.assert_array_equal(labels.data, before)


def test_commit_writes_a_layer_later_work_never_overwrites(seg, qtbot, helpers):
    viewer, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    mine = np.asarray(widget.state.labels_layer.data) == 1
    widget.prompt_panel.commit_button.click()
    committed = widget.state.committed_layer
    assert committed is not None and committed.name == "vol committed"
    np.testing.assert_array_equal(np.asarray(committed.data) == 1, mine)
    frozen = np.asarray(committed.data).copy()
    widget.propagate()  # later work on the same object
    helpers.wait_idle(qtbot, widget)
    # the user repaints object 1's pixels as a new object 2 and commits that too
    labels = widget.state.labels_layer.data
    labels[labels == 1] = 2
    labels[3, :5, :5] = 2
    widget.prompt_panel.object_spin.setValue(2)
    widget.prompt_panel.commit_button.click()  # commits only pixels that are still free
    data = np.asarray(committed.data)
    np.testing.assert_array_equal(data[frozen > 0], frozen[frozen > 0])
    assert (data[3, :5, :5] == 2).all()
    assert "never overwrites" in widget.status.text()


def test_status_messages_are_words_and_go_stale(seg, qtbot, helpers):
    viewer, widget = seg
    widget.stale_after_s = 0.2
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    text = widget.status.text()
    assert text.startswith("Segmented slice 6: ") and ("pixels" in text or "nothing found" in text)
    qtbot.waitUntil(lambda: "Segmented" not in widget.status.text(), timeout=3000)


def test_busy_message_gives_expected_time(seg, qtbot, helpers):
    viewer, widget = seg
    helpers.click(widget, 6, 30, 24)
    assert "Segmenting slice 6" in widget.status.text() and "cpu" in widget.status.text()
    helpers.wait_idle(qtbot, widget)
    assert widget._seconds_per_slice is not None and widget._seconds_per_slice > 0
    helpers.click(widget, 7, 30, 24)
    assert "about " in widget.status.text() and " s on cpu" in widget.status.text()
    helpers.wait_idle(qtbot, widget)


def test_speed_hint_for_1024_on_cpu(seg):
    _, widget = seg
    panel = widget.model_panel
    panel.set_choice(image_size=1024, device="cpu")
    assert not panel.speed_hint.isHidden() and "CPU" in panel.speed_hint.text()
    panel.set_choice(image_size=512)
    assert panel.speed_hint.isHidden()


def test_one_model_shared_by_the_docks(seg, helpers, tiny_model):
    viewer, widget = seg
    octa = helpers.open_dock(viewer, "OCTA (SAM-OCTA2)")
    assert octa.model is tiny_model and widget.model is tiny_model
    octa.set_model(None)
    assert widget.model is None
    octa.model_panel.model_loaded.emit(tiny_model, "test")  # a load in the OCTA dock reaches the segment dock
    assert widget.model is tiny_model and "Model ready" in widget.status.text()
