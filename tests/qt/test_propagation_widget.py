"""Propagation through the widget's worker: completion, cancel, undo/redo, other labels kept."""

from __future__ import annotations

import numpy as np


def _run(widget, qtbot, helpers):
    worker = widget.propagate()
    assert worker is not None, widget.status.text()
    helpers.wait_idle(qtbot, widget)
    return worker


def test_propagate_to_completion_matches_engine(seg, qtbot, helpers):
    from napari_sam2med.engine import Session, run_to_end

    viewer, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    _run(widget, qtbot, helpers)
    labels = np.asarray(widget.state.labels_layer.data)
    assert widget.propagate_panel.progress.value() == widget.propagate_panel.progress.maximum()
    assert "Propagation done" in widget.status.text()
    # same result as driving the engine synchronously with the same prompt
    session = Session(widget.model, widget.state.session.stack)
    session.add_points(1, 6, [[30.0, 24.0]], [1])
    expected = run_to_end(session.propagate())
    np.testing.assert_array_equal(labels, expected)
    assert (labels == 1).sum() > 0 and set(np.unique(labels)) <= {0, 1}


def test_range_and_direction(seg, qtbot, helpers):
    _, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    before = np.asarray(widget.state.labels_layer.data).copy()
    panel = widget.propagate_panel
    panel.all_slices.setChecked(False)
    panel.first_spin.setValue(4)
    panel.last_spin.setValue(9)
    panel.direction_combo.setCurrentIndex(1)  # up (forward)
    _run(widget, qtbot, helpers)
    after = np.asarray(widget.state.labels_layer.data)
    changed = {z for z in range(12) if not np.array_equal(before[z], after[z])}
    assert changed and changed <= {7, 8, 9}  # forward from the prompt at 6, inside 4..9


def test_other_labels_are_never_overwritten(seg, qtbot, helpers):
    _, widget = seg
    labels = widget.state.labels_layer.data
    labels[:, :, :32] = 7  # the user's own object covers half of every slice
    mine = labels == 7
    helpers.click(widget, 6, 30, 40)
    helpers.wait_idle(qtbot, widget)
    _run(widget, qtbot, helpers)
    assert (labels[mine] == 7).all()
    assert (labels == 1).any()
    assert not (labels[:, :, 32:] == 7).any()


def test_cancel_leaves_whole_slices(seg, qtbot, helpers):
    _, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    before = np.asarray(widget.state.labels_layer.data).copy()
    seen = []

    def cancel_after_first(step):
        seen.append(step.slice_idx)
        widget.cancel()

    worker = widget.propagate()
    worker.yielded.connect(cancel_after_first)
    helpers.wait_idle(qtbot, widget)
    group = widget.state.history.undo_stack[-1]
    assert group.title.startswith("propagate")
    total = 12
    assert 1 <= len(seen) < total
    after = np.asarray(widget.state.labels_layer.data)
    written = {edit.index[0]: edit for edit in group.edits}
    for z in range(total):
        if z in written:  # a written slice is exactly the recorded whole-slice result
            np.testing.assert_array_equal(after[z], written[z].after)
        else:
            np.testing.assert_array_equal(after[z], before[z])
    assert set(written) <= set(seen)
    assert "cancelled" in widget.status.text()


def test_undo_redo_whole_propagations_two_levels(seg, qtbot, helpers):
    viewer, widget = seg
    labels = widget.state.labels_layer.data
    snaps = [labels.copy()]
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    snaps.append(labels.copy())
    _run(widget, qtbot, helpers)
    snaps.append(labels.copy())
    widget.new_object()
    helpers.click(widget, 3, 50, 50)
    helpers.wait_idle(qtbot, widget)
    snaps.append(labels.copy())
    _run(widget, qtbot, helpers)
    snaps.append(labels.copy())
    assert len({s.tobytes() for s in snaps}) == 5  # every step changed something

    # Ctrl+Z through napari's key dispatch, with the labels layer active (its own
    # class binding would otherwise run napari's paint undo)
    handler = viewer.window._qt_viewer.canvas._key_map_handler
    viewer.layers.selection.active = widget.state.labels_layer
    handler.press_key("Control-Z")
    handler.release_key("Control-Z")
    np.testing.assert_array_equal(labels, snaps[3])  # one key press undid a whole propagation
    widget.undo()
    np.testing.assert_array_equal(labels, snaps[2])
    widget.undo()
    np.testing.assert_array_equal(labels, snaps[1])  # second propagation level undone
    viewer.layers.selection.active = widget.state.points_layer
    handler.press_key("Control-Shift-Z")
    handler.release_key("Control-Shift-Z")
    np.testing.assert_array_equal(labels, snaps[2])
    widget.prompt_panel.redo_button.click()
    np.testing.assert_array_equal(labels, snaps[3])


def test_undo_interleaves_napari_paint(seg, qtbot, helpers):
    _, widget = seg
    layer = widget.state.labels_layer
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    after_click = layer.data.copy()
    layer.paint((6, 5, 5), 9, refresh=True)  # a user stroke, in napari's own history
    assert layer.data[6, 5, 5] == 9
    widget.undo()
    np.testing.assert_array_equal(layer.data, after_click)
    widget.undo()
    assert not layer.data.any()


def test_four_d_layer_uses_chosen_axis(make_napari_viewer, qtbot, tiny_model, volume, helpers):
    viewer = make_napari_viewer()
    movie = np.stack([volume[0][:6], volume[0][6:]])  # (T=2, Z=6, Y, X)
    viewer.add_image(movie, name="tzyx")
    widget = helpers.open_dock(viewer, "SAM2 segment & propagate")
    widget.set_model(tiny_model, "test")
    assert widget.image_panel.axis_combo.count() == 2
    assert widget.image_panel.stack_axis() == 1  # Z by default
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)
    helpers_click = np.array([[1, 2, 30, 24]], float)
    widget.state.points_layer.add(helpers_click)
    helpers.wait_idle(qtbot, widget)
    _run(widget, qtbot, helpers)
    labels = widget.state.labels_layer.data
    assert labels.shape == (2, 6, 64, 64)
    assert not labels[0].any()  # the other time point is untouched
    assert (labels[1] == 1).any()
    assert sum(bool(labels[1, z].any()) for z in range(6)) > 1
