"""The napari "Fine-tune" dock: a run on a layer pair, Cancel (resumable), bad layer shapes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

pytestmark = pytest.mark.timeout(300)

DOCK = "Fine-tune"


def _pair(viewer, shape=(6, 64, 64), label_shape=None):
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, shape).astype(np.float32)
    labels = np.zeros(label_shape or shape, np.int32)
    labels[1:5, 20:40, 24:44] = 1
    image[1:5, 20:40, 24:44] += 80  # a bright object where the labels are
    viewer.add_image(image, name="ct")
    viewer.add_labels(labels, name="ct labels")


def _dock(make_napari_viewer, tmp_path, steps=2, **pair):
    viewer = make_napari_viewer()
    _pair(viewer, **pair)
    _, w = viewer.window.add_plugin_dock_widget("napari-sam2med", DOCK)
    w.image_combo.setCurrentText("ct")
    w.labels_combo.setCurrentText("ct labels")
    w.model_combo.setCurrentText("sam2.1-test")
    w.size_combo.setCurrentText("64")
    w.random_init.setChecked(True)
    w.preset_combo.setCurrentText("decoder")
    w.steps_spin.setValue(steps)
    w.out_edit.setText(str(tmp_path / "run"))
    return viewer, w


def test_fine_tune_runs_and_offers_checkpoint(make_napari_viewer, qtbot, tmp_path):
    from qtpy.QtCore import Qt

    from napari_sam2med._qt._worker import Outcome
    from napari_sam2med._qt.viewer_context import context_for

    viewer, w = _dock(make_napari_viewer, tmp_path)
    w.data_edit.setText("synthetic:1:3:64:6")  # a validation volume (the layer pair always trains)
    _, seg = viewer.window.add_plugin_dock_widget("napari-sam2med", "SAM2 segment & propagate")
    with qtbot.waitSignal(w.runner.ended, timeout=240_000):
        qtbot.mouseClick(w.run_btn, Qt.LeftButton)
    assert w.last_end.outcome is Outcome.DONE, w.status.text()
    run = tmp_path / "run"
    assert (run / "best.pt").is_file() and (run / "run_card.json").is_file() and (run / "state.pt").is_file()
    assert w.checkpoint == run / "best.pt"
    assert "step 2/2" in w.loss_label.text() and "val Dice" in w.loss_label.text()
    assert w.result.step == 2 and w.result.best_dice is not None
    assert len(w.plot.losses) == 2 and w.plot.dices  # the live plot got every step and a validation
    # the model panel offers the new checkpoint at once
    assert ("sam2.1-test", run / "best.pt") in context_for(viewer).models.checkpoints
    choice = seg.model_panel.choice()
    assert choice.checkpoint == run / "best.pt" and choice.name == "sam2.1-test"
    import json

    card = json.loads((run / "run_card.json").read_text())
    assert "layer:ct" in json.dumps(card)


def test_cancel_leaves_resumable_run(make_napari_viewer, qtbot, tmp_path):
    import torch
    from qtpy.QtCore import Qt

    from napari_sam2med._qt._worker import Outcome

    viewer, w = _dock(make_napari_viewer, tmp_path, steps=500)
    w._on_step_orig = w._on_step

    def cancel_on_first(step):  # click Cancel as soon as training is under way
        w._on_step_orig(step)
        if step.done == 1:
            qtbot.mouseClick(w.cancel_btn, Qt.LeftButton)

    w._on_step = cancel_on_first
    with qtbot.waitSignal(w.runner.ended, timeout=240_000):
        qtbot.mouseClick(w.run_btn, Qt.LeftButton)
    assert w.last_end.outcome is Outcome.CANCELLED, w.status.text()
    state = tmp_path / "run" / "state.pt"
    assert state.is_file()
    done = int(torch.load(state, weights_only=True)["step"])
    assert 1 <= done < 500
    assert "resume" in w.status.text()
    # a second Run on the same folder resumes from the saved step
    w.steps_spin.setValue(done + 1)
    w._on_step = w._on_step_orig
    with qtbot.waitSignal(w.runner.ended, timeout=240_000):
        qtbot.mouseClick(w.run_btn, Qt.LeftButton)
    assert w.last_end.outcome is Outcome.DONE, w.status.text()
    assert w.last_end.steps == 1 and w.result.step == done + 1
    # a segmentation dock opened after the run offers the checkpoint too
    _, seg = viewer.window.add_plugin_dock_widget("napari-sam2med", "SAM2 segment & propagate")
    assert seg.model_panel.choice().checkpoint == w.checkpoint


def test_mismatched_layers_one_line_error_nothing_written(make_napari_viewer, qtbot, tmp_path):
    from qtpy.QtCore import Qt

    viewer, w = _dock(make_napari_viewer, tmp_path, label_shape=(6, 64, 60))
    qtbot.mouseClick(w.run_btn, Qt.LeftButton)
    assert not w.is_busy()
    text = w.status.text()
    assert text.startswith("Error:") and "differ in shape" in text and "\n" not in text
    assert not (tmp_path / "run").exists()
