"""Saving and reopening an annotation (zarr + JSON folder), and autosave."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_save_and_reopen_restores_labels_prompts_objects_without_resegmenting(seg, qtbot, helpers, tmp_path):
    viewer, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.click(widget, 6, 10, 10, negative=True)
    helpers.wait_idle(qtbot, widget)
    widget.rename_object(1, "liver")
    ann = widget.state
    ann.labels_layer.data[0, :4, :4] = 9  # a hand-painted object the prompts do not explain
    ann.labels_layer.data[6, :3, :3] = 1  # and a hand correction of object 1 on its prompted slice
    saved_labels = np.asarray(ann.labels_layer.data).copy()
    folder = widget.save_project(tmp_path / "case1.sam2med")
    meta = json.loads((folder / "project.json").read_text())
    assert meta["objects"]["1"]["name"] == "liver" and len(meta["points"]) == 2
    assert (folder / "labels.zarr").is_dir()

    # wreck the session's work, then open the project again
    ann.labels_layer.data[...] = 0
    ann.points_layer.data = np.zeros((0, 3))
    helpers.wait_idle(qtbot, widget)
    assert widget.open_project(folder), widget.status.text()
    helpers.wait_idle(qtbot, widget)
    np.testing.assert_array_equal(ann.labels_layer.data, saved_labels)  # not re-segmented over
    assert ann.points_layer.features["positive"].tolist() == [True, False]
    assert ann.objects[1].name == "liver"
    assert "'liver'" in widget.object_panel.table.item(0, 1).text() or \
        widget.object_panel.table.item(0, 1).text() == "liver"
    # the next click segments only its own slice
    helpers.click(widget, 8, 30, 24)
    helpers.wait_idle(qtbot, widget)
    after = np.asarray(ann.labels_layer.data)
    changed = {z for z in range(12) if not np.array_equal(after[z], saved_labels[z])}
    assert changed <= {8}


def test_autosave_writes_the_project_folder(seg, qtbot, helpers, tmp_path):
    _, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    folder = widget.save_project(tmp_path / "auto.sam2med")
    widget.state.labels_layer.data[3, 5, 5] = 4
    widget.project_panel.timer.setInterval(50)
    qtbot.waitUntil(lambda: "autosaved" in widget.project_panel.folder_label.text(), timeout=5000)
    import zarr

    assert zarr.open_array(str(folder / "labels.zarr"), mode="r")[3, 5, 5] == 4


def test_open_bad_folder_is_a_message(seg, tmp_path):
    _, widget = seg
    assert not widget.open_project(tmp_path)
    assert "not a project folder" in widget.status.text()


def test_failed_save_keeps_the_previous_project(seg, qtbot, helpers, tmp_path, monkeypatch):
    from napari_sam2med._qt import project_io

    _, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    folder = widget.save_project(tmp_path / "p.sam2med")
    before = (folder / "project.json").read_text()

    def broken(path, array):
        raise OSError("disk full")

    monkeypatch.setattr(project_io, "_write_array", broken)
    widget.state.labels_layer.data[2, 1, 1] = 3
    assert widget.save_project(folder) is None and "disk full" in widget.status.text()
    assert (folder / "project.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.sam2med"]  # no half-written sibling


@pytest.fixture(autouse=True)
def _quiet_errors(monkeypatch):
    """The widget also raises a napari notification for errors; keep the tests' output clean."""
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda message: None)
