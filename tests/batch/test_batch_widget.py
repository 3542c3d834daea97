"""The napari "Batch" dock: a folder run on a local cluster, results opened as layers, Cancel."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")

from batch_testdata import fill_dock, make_study  # noqa: E402

pytestmark = pytest.mark.timeout(300)

DOCK = "Batch (many volumes)"


def _dock(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("SAM2MED_DEV", "1")  # offers the sam2.1-test model
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2med", DOCK)
    return viewer, widget


def test_batch_dock_runs_folder_and_opens_result(make_napari_viewer, monkeypatch, qtbot, tmp_path, test_checkpoint):
    from qtpy.QtCore import Qt

    study = tmp_path / "study"
    make_study(study, n=3)
    viewer, w = _dock(make_napari_viewer, monkeypatch)
    out = tmp_path / "out"
    fill_dock(w, study, out, test_checkpoint)

    qtbot.mouseClick(w.run_btn, Qt.LeftButton)
    assert w.is_busy() and not w.run_btn.isEnabled() and w.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: not w.is_busy(), timeout=240_000)
    assert w.status.text().startswith("Done: 3 written, 0 skipped"), w.status.text()
    assert w.progress.value() == w.progress.maximum() == 3
    assert w.results.count() == 3 and len(list(out.glob("*_labels.tif.json"))) == 3

    n_layers = len(viewer.layers)
    qtbot.mouseClick(w.open_btn, Qt.LeftButton)  # row 0: vol0.tif
    assert len(viewer.layers) == n_layers + 2
    image, labels = viewer.layers[-2], viewer.layers[-1]
    assert image.data.shape == labels.data.shape == (6, 64, 64)
    np.testing.assert_array_equal(labels.data, tifffile.imread(out / "vol0_labels.tif"))
    assert type(labels).__name__ == "Labels"

    # A second run skips everything without starting a cluster.
    qtbot.mouseClick(w.run_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.is_busy(), timeout=60_000)
    assert w.status.text().startswith("Done: 0 written, 3 skipped"), w.status.text()


def test_batch_dock_cancel_and_bad_input(make_napari_viewer, monkeypatch, qtbot, tmp_path, test_checkpoint):
    from qtpy.QtCore import Qt

    study = tmp_path / "study"
    make_study(study, n=3)
    viewer, w = _dock(make_napari_viewer, monkeypatch)

    qtbot.mouseClick(w.run_btn, Qt.LeftButton)  # nothing chosen yet
    assert not w.is_busy() and w.status.text() == "Error: choose a folder or a manifest first"

    (study / "vol2.prompts.json").unlink()  # a volume without prompts: listed, nothing runs
    fill_dock(w, study, tmp_path / "bad", test_checkpoint)
    qtbot.mouseClick(w.run_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.is_busy(), timeout=60_000)
    assert w.status.text().startswith("Error:") and "vol2.tif" in w.status.text()
    assert not (tmp_path / "bad").exists()

    make_study(study, n=3)
    out = tmp_path / "out"
    fill_dock(w, study, out, test_checkpoint)
    qtbot.mouseClick(w.run_btn, Qt.LeftButton)
    qtbot.mouseClick(w.cancel_btn, Qt.LeftButton)
    assert w.status.text() == "Cancelling..."
    qtbot.waitUntil(lambda: not w.is_busy(), timeout=120_000)
    assert w.status.text().startswith("Cancelled"), w.status.text()
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()
    assert len(list(out.glob("*_labels.tif.json"))) < 3
