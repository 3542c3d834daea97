"""Jobs bound to their layers, closing and reopening the dock, one annotation per image, Cancel/failure text.

Every test opens the dock through napari's Plugins-menu path (``add_plugin_dock_widget``).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2med._qt.shortcuts import Shortcut

SEGMENT = "SAM2 segment & propagate"


def _slow_propagation(widget, monkeypatch, delay=0.15):
    """Make each propagation step take ``delay`` s so a test can act mid-run."""
    import time

    session = widget.state.session
    real = session.propagate

    def slow(**kwargs):
        gen = real(**kwargs)
        for step in gen:
            time.sleep(delay)
            yield step

    monkeypatch.setattr(session, "propagate", slow)


def _prompted(seg, qtbot, helpers):
    viewer, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    return viewer, widget


def test_deleting_the_image_mid_propagation_stops_the_job_and_touches_no_other_layer(
        seg, qtbot, helpers, monkeypatch, volume):
    viewer, widget = _prompted(seg, qtbot, helpers)
    other = viewer.add_image(volume[0][::-1].copy(), name="other", scale=(2.5, 0.8, 0.8))
    other_labels = widget._annotation_for(other)  # the other image already has its annotation
    widget._ensure_layers(other_labels)
    other_before = np.asarray(other_labels.labels_layer.data).copy()
    n_layers = len(viewer.layers)
    _slow_propagation(widget, monkeypatch)
    worker = widget.propagate()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.propagation_runner.worker is not None
                    and widget._propagation is not None and len(widget._propagation.slices) >= 1, timeout=20000)
    viewer.layers.remove("vol")
    helpers.wait_idle(qtbot, widget)
    assert "propagation stopped: its image layer 'vol' was deleted" in widget.status.text()
    np.testing.assert_array_equal(other_labels.labels_layer.data, other_before)  # not one pixel elsewhere
    assert len(viewer.layers) == n_layers - 1  # nothing was made for the other image
    assert widget.image_panel.current_image() is other


def test_closing_the_dock_cancels_and_disconnects_and_reopening_reuses(seg, qtbot, helpers, monkeypatch):
    viewer, widget = _prompted(seg, qtbot, helpers)
    ann = widget.state
    points, labels = ann.points_layer, ann.labels_layer
    n_callbacks = len(points.mouse_drag_callbacks)
    _slow_propagation(widget, monkeypatch)
    widget.propagate()
    qtbot.waitUntil(lambda: widget._propagation is not None and bool(widget._propagation.slices), timeout=20000)
    dock = next(d for d in viewer.window._wrapped_dock_widgets.values() if d.widget() is widget)
    dock.title.close_button.click()  # the dock's own close button
    qtbot.waitUntil(lambda: not widget.propagation_runner.busy, timeout=20000)
    assert widget._closed
    frozen = np.asarray(labels.data).copy()
    # no viewer event, key binding or mouse callback of the closed dock is left
    assert len(points.mouse_drag_callbacks) == n_callbacks - 1
    assert widget.connections.events == [] and widget.connections.keys == []
    for shortcut in Shortcut:
        assert _bound(viewer, shortcut.key) is None
    points.add(np.array([[6, 40.0, 40.0]]))  # a click on the old prompt layer: nobody segments it
    qtbot.wait(300)
    assert not widget.is_busy() and not widget._pending
    np.testing.assert_array_equal(labels.data, frozen)
    # reopening finds the same layers (no "[1]" duplicates) and the same model
    names = [layer.name for layer in viewer.layers]
    reopened = helpers.open_dock(viewer, SEGMENT)
    assert reopened is not widget
    assert [layer.name for layer in viewer.layers] == names
    assert reopened.state.labels_layer is labels and reopened.state.points_layer is points
    assert reopened.model is widget.model is not None
    assert reopened.state.history.undo_stack  # undo history kept with the annotation
    helpers.click(reopened, 6, 40, 40)  # and the reopened dock answers clicks again
    helpers.wait_idle(qtbot, reopened)
    assert reopened.state.session is not None


def _bound(viewer, key):
    from napari.utils.key_bindings import coerce_keybinding

    return viewer.keymap.get(coerce_keybinding(key))


def test_model_is_freed_when_the_last_dock_has_gone(seg, qtbot):
    viewer, widget = seg
    manager = widget.context.models
    manager.grace_s = 0.05
    dock = next(d for d in viewer.window._wrapped_dock_widgets.values() if d.widget() is widget)
    widget.update_prompts()  # builds the image's session on the model
    ann = widget.state
    assert ann.session is not None
    dock.title.close_button.click()
    qtbot.waitUntil(lambda: manager.model is None, timeout=5000)
    assert ann.session is None  # no session keeps the freed model alive


def test_switching_images_restores_each_annotation(seg, qtbot, helpers, volume):
    viewer, widget = _prompted(seg, qtbot, helpers)
    first = widget.state
    first_labels = np.asarray(first.labels_layer.data).copy()
    other = viewer.add_image(volume[0][::-1].copy(), name="other", scale=(2.5, 0.8, 0.8))
    combo = widget.image_panel.image_combo
    combo.setCurrentIndex(combo.findText("other"))
    second = widget.state
    assert second is not first and second.image_layer is other
    assert "'other'" in widget.status.text()  # the status line is about the image shown
    helpers.click(widget, 3, 20, 20)
    helpers.wait_idle(qtbot, widget)
    n_layers = len(viewer.layers)
    for _ in range(3):  # back and forth: no new layers, nothing orphaned
        combo.setCurrentIndex(combo.findText("vol"))
        assert widget.state is first
        combo.setCurrentIndex(combo.findText("other"))
        assert widget.state is second
    assert len(viewer.layers) == n_layers
    combo.setCurrentIndex(combo.findText("vol"))
    np.testing.assert_array_equal(first.labels_layer.data, first_labels)
    assert [g.title for g in first.history.undo_stack] == ["segment slice 6"]
    assert first.points_layer.features["obj_id"].tolist() == [1]
    widget.undo()  # the undo history is this image's own
    assert not np.asarray(first.labels_layer.data).any()
    assert (np.asarray(second.labels_layer.data)[3] == 1).any()


def test_cancel_shows_what_was_done(seg, qtbot, helpers, monkeypatch):
    _, widget = _prompted(seg, qtbot, helpers)
    _slow_propagation(widget, monkeypatch)
    widget.propagate()
    qtbot.waitUntil(lambda: widget._propagation is not None and len(widget._propagation.slices) >= 2,
                    timeout=20000)
    widget.propagate_panel.cancel_button.click()
    helpers.wait_idle(qtbot, widget)
    bar = widget.propagate_panel.progress
    assert 2 <= bar.value() < bar.maximum() == 12  # not 100 %
    title = widget.state.history.undo_stack[-1].title
    written = int(title.split(": ")[1].split(" of ")[0])
    assert title.startswith("propagate both 0..11: ") and title.endswith("of 12 slices (cancelled)")
    assert 2 <= written < 12
    assert f"after {written} slices of 12" in widget.status.text()


def test_worker_error_mid_propagation_says_failed_and_keeps_whole_slices(seg, qtbot, helpers, monkeypatch):
    _, widget = _prompted(seg, qtbot, helpers)
    session = widget.state.session
    real = session.propagate
    before = np.asarray(widget.state.labels_layer.data).copy()

    def breaks_after_two(**kwargs):
        gen = real(**kwargs)
        yield next(gen)
        yield next(gen)
        raise RuntimeError("CUDA out of memory")  # superqt would swallow a bare RuntimeError

    monkeypatch.setattr(session, "propagate", breaks_after_two)
    widget.propagate()
    helpers.wait_idle(qtbot, widget)
    assert "propagation failed: CUDA out of memory" in widget.status.text()
    assert not widget.propagation_runner.busy and widget.propagate_panel.run_button.isEnabled()
    group = widget.state.history.undo_stack[-1]
    assert group.title.endswith("(failed)")
    after = np.asarray(widget.state.labels_layer.data)
    for edit in group.edits:  # every written slice is a whole result; the others are untouched
        np.testing.assert_array_equal(after[edit.index], edit.after)
    untouched = set(range(12)) - {e.index[0] for e in group.edits}
    for z in untouched:
        np.testing.assert_array_equal(after[z], before[z])
    assert len(group.edits) <= 2


@pytest.mark.parametrize("shortcut", [Shortcut.NEW_OBJECT, Shortcut.TOGGLE])
def test_shortcuts_work_through_napari_key_dispatch_and_are_in_tooltips(seg, shortcut):
    viewer, widget = seg
    handler = viewer.window._qt_viewer.canvas._key_map_handler
    widget.state.labels_layer.data[6, 0, 0] = 1  # object 1 is in use: N goes to 2
    viewer.layers.selection.active = viewer.layers["vol"]
    before = (widget.current_object(), widget.prompt_panel.negative_button.isChecked())
    handler.press_key(shortcut.key)
    handler.release_key(shortcut.key)
    after = (widget.current_object(), widget.prompt_panel.negative_button.isChecked())
    if shortcut is Shortcut.NEW_OBJECT:
        assert after[0] == before[0] + 1
        assert shortcut.text in widget.prompt_panel.new_object_button.toolTip()
    else:
        assert after[1] != before[1]
        assert shortcut.text in widget.prompt_panel.negative_button.toolTip()
    assert shortcut.text in widget.help_panel.table.text()


def test_deleting_the_labels_layer_keeps_working_with_a_new_one(seg, qtbot, helpers):
    viewer, widget = _prompted(seg, qtbot, helpers)
    viewer.layers.remove(widget.state.labels_layer)
    assert widget.state.image_layer is viewer.layers["vol"] and widget.state.labels_layer is None
    widget.prompt_panel.points_button.click()  # the next action makes a fresh labels layer
    assert widget.state.labels_layer in viewer.layers
    helpers.click(widget, 7, 30, 24)
    helpers.wait_idle(qtbot, widget)
    assert widget.state.history.undo_stack[-1].title == "segment slice 7"


def test_clear_slice_and_propagate_keys(seg, qtbot, helpers):
    viewer, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.click(widget, 8, 30, 24)
    helpers.wait_idle(qtbot, widget)
    widget.state.labels_layer.data[6, :3, :3] = 1  # object 1 certainly has pixels on slice 6
    handler = viewer.window._qt_viewer.canvas._key_map_handler
    viewer.layers.selection.active = widget.state.points_layer
    handler.press_key(Shortcut.CLEAR_SLICE.key)  # at slice 6: its prompts and its mask go
    handler.release_key(Shortcut.CLEAR_SLICE.key)
    helpers.wait_idle(qtbot, widget)
    points = widget.state.points_layer
    assert [round(z) for z in points.data[:, 0]] == [8]
    assert not (np.asarray(widget.state.labels_layer.data[6]) == 1).any()
    handler.press_key(Shortcut.PROPAGATE.key)
    handler.release_key(Shortcut.PROPAGATE.key)
    assert widget.propagation_runner.busy or widget.state.history.undo_stack[-1].title.startswith("propagate")
    helpers.wait_idle(qtbot, widget)
    assert widget.state.history.undo_stack[-1].title.startswith("propagate") or "Propagation done" in \
        widget.status.text()
