"""AutoSAM2 for users (issue 13): the segment dock's Auto-segment action and ``sam2med train --auto-prompt``.

The frozen SAM2 is the random-weight ``sam2.1-test`` at 256 px; the prompt encoder is trained on
bright discs for ~10 s (``auto_testdata``), enough to find a disc without clicks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # auto_testdata

from auto_testdata import blob_stack, blobs, frozen_sam2, train_encoder  # noqa: E402

from napari_sam2med.engine.metrics import dice  # noqa: E402

PLUGIN, SEGMENT = "napari-sam2med", "SAM2 segment & propagate"  # napari.yaml's display name


@pytest.fixture(scope="module")
def sam2():
    import torch

    torch.set_num_threads(1)
    return frozen_sam2(0)


@pytest.fixture(scope="module")
def encoder(sam2, tmp_path_factory):
    return train_encoder(sam2, tmp_path_factory.mktemp("enc") / "blobs.pt")


# -- the widget ----------------------------------------------------------------------------
def _open_dock(make_napari_viewer, sam2, encoder, monkeypatch, slices=4):
    """(viewer, widget, truth): a disc stack shown at slice 2, the model set, object 1 painted, and the
    "Open file…" dialog answering with the trained prompt encoder."""
    pytest.importorskip("napari")
    from napari_sam2med._qt import form_rows

    monkeypatch.setattr(form_rows.QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(encoder), "")))
    viewer = make_napari_viewer()
    stack, truth = blob_stack(slices)
    viewer.add_image(stack, name="discs", contrast_limits=(0, 255))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, SEGMENT)
    widget.set_model(sam2, "sam2.1-test @ 256 (random weights, frozen)")
    viewer.dims.set_current_step(0, 2)
    widget.state.labels_layer.data[:, :3, :3] = 1  # the user's own object 1 in a corner
    widget.state.label_ids = None
    return viewer, widget, truth


@pytest.fixture
def dock(make_napari_viewer, qtbot, sam2, encoder, monkeypatch):
    """A 4-slice dock (see :func:`_open_dock`)."""
    return _open_dock(make_napari_viewer, sam2, encoder, monkeypatch)


def _click_auto(qtbot, widget, scope="slice", mode="per-frame"):
    from qtpy.QtCore import Qt

    panel = widget.auto_panel
    if panel.encoder() is None or panel.encoder()[0] == "shipped":
        panel.encoder_combo.setCurrentIndex(panel.encoder_combo.count() - 1)  # "Open file…" (the dialog is patched)
    panel.scope_combo.setCurrentIndex(panel.scope_combo.findData(scope))
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData(mode))
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.is_busy() and widget.auto.run is None, timeout=60000)


def test_auto_segment_slice_is_a_new_undoable_object_and_a_mask_prompt(dock, qtbot):
    from qtpy.QtCore import Qt

    viewer, widget, truth = dock
    labels = widget.state.labels_layer.data
    _click_auto(qtbot, widget)
    assert "Auto-segmented object 2" in widget.status.text(), widget.status.text()
    assert dice(labels[2] == 2, truth[2]) >= 0.6
    assert not (np.delete(labels, 2, axis=0) == 2).any()  # this slice only
    assert (labels[:, :3, :3] == 1).all()  # the user's object kept
    ann = widget.state
    assert 2 in [r.obj_id for r in widget.object_panel._rows]
    prompt = ann.session.prompts.get(2, 2)
    assert prompt is not None and prompt.mask is not None  # the auto mask conditions SAM2 on slice 2
    assert ann.history.undo_stack[-1].title == "auto-segment slice 2"

    qtbot.mouseClick(widget.prompt_panel.undo_button, Qt.MouseButton.LeftButton)
    assert not (np.asarray(labels) == 2).any()
    assert ann.session.prompts.get(2, 2) is None and (2, 2) not in ann.mask_prompts
    assert 2 not in [r.obj_id for r in widget.object_panel._rows]
    qtbot.mouseClick(widget.prompt_panel.redo_button, Qt.MouseButton.LeftButton)
    assert dice(labels[2] == 2, truth[2]) >= 0.6 and ann.session.prompts.get(2, 2).mask is not None

    # correct nothing, re-propagate: the auto mask is the prompt SAM2 propagates from
    widget.prompt_panel.object_spin.setValue(2)
    assert widget.propagate() is not None, widget.status.text()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=60000)
    assert "Propagation done" in widget.status.text(), widget.status.text()
    assert dice(labels[2] == 2, truth[2]) >= 0.6


def test_auto_segment_stack_per_frame_and_first_frame_propagate(dock, qtbot):
    from qtpy.QtCore import Qt

    _, widget, truth = dock
    labels = widget.state.labels_layer.data
    panel = widget.auto_panel
    _click_auto(qtbot, widget, "stack", "per-frame")
    assert dice(labels == 2, truth) >= 0.6, widget.status.text()
    assert panel.progress.value() == panel.progress.maximum() == 4
    ann = widget.state
    assert ann.history.undo_stack[-1].title == "auto-segment stack (per-frame)"
    assert ann.session.prompts.get(2, 2).mask is not None  # the shown slice's mask is the prompt
    assert ann.propagated[2] == {0, 1, 3}

    qtbot.mouseClick(widget.prompt_panel.undo_button, Qt.MouseButton.LeftButton)  # one step for the stack
    assert not (np.asarray(labels) == 2).any() and 2 not in ann.propagated

    _click_auto(qtbot, widget, "stack", "first-frame-propagate")
    assert ann.history.undo_stack[-1].title == "auto-segment stack (first-frame-propagate)", widget.status.text()
    assert dice(labels[2] == 2, truth[2]) >= 0.6 and panel.progress.maximum() == 4
    assert ann.session.prompts.get(2, 2).mask is not None


def test_cancel_keeps_whole_slices_as_one_undo_step(make_napari_viewer, qtbot, sam2, encoder, monkeypatch):
    _, widget, _ = _open_dock(make_napari_viewer, sam2, encoder, monkeypatch, slices=16)  # long enough to cancel
    panel = widget.auto_panel
    panel.encoder_combo.setCurrentIndex(panel.encoder_combo.count() - 1)
    panel.scope_combo.setCurrentIndex(panel.scope_combo.findData("stack"))
    seen = []

    def cancel_after_first(step):
        seen.append(step.slice_idx)
        if panel.cancel_button.isEnabled():
            panel.cancel_button.click()

    panel.run_button.click()
    widget.propagation_runner.worker.yielded.connect(cancel_after_first)
    qtbot.waitUntil(lambda: not widget.is_busy() and widget.auto.run is None, timeout=60000)
    group = widget.state.history.undo_stack[-1]
    assert group.title == "auto-segment stack (per-frame) (cancelled)"
    assert 1 <= len(seen) < 16 and len(group.edits) <= len(seen)
    assert "Auto-segment cancelled" in widget.status.text() and panel.run_button.isEnabled()
    written = {int(z) for z in np.flatnonzero((np.asarray(widget.state.labels_layer.data) == 2).any(axis=(1, 2)))}
    assert written <= set(seen)


def test_auto_segment_refuses_an_encoder_of_other_sam2_weights(dock, qtbot, tmp_path, encoder, monkeypatch):
    from napari_sam2med._qt import form_rows
    from napari_sam2med.auto.prompt_net import load_prompt_net, save_prompt_net

    _, widget, _ = dock
    net, _ = load_prompt_net(encoder)
    other = save_prompt_net(tmp_path / "other.pt", net, frozen_sam2(1))  # same network, other SAM2 weights
    monkeypatch.setattr(form_rows.QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(other), "")))
    before = np.asarray(widget.state.labels_layer.data).copy()
    _click_auto(qtbot, widget)
    text = widget.status.text()
    assert "auto-segment failed: other.pt was trained against other 'sam2.1-test' weights" in text, text
    np.testing.assert_array_equal(widget.state.labels_layer.data, before)
    assert not widget.state.history.undo_stack and 2 not in widget.state.objects


def test_auto_segment_refuses_a_multichannel_encoder_on_a_grey_stack(dock, qtbot, tmp_path, sam2, monkeypatch):
    from napari_sam2med._qt import form_rows
    from napari_sam2med.auto.prompt_net import PromptNet, PromptNetConfig, save_prompt_net

    _, widget, _ = dock
    net = PromptNet(PromptNetConfig.for_model(sam2, input_size=64, width=8, aux=True, crop_context=2.0,
                                              locate_size=64, input_channels=["OCTA(ILM_OPL)", "OCTA(FULL)",
                                                                              "OCTA(OPL_BM)"]))
    three = save_prompt_net(tmp_path / "three.pt", net, sam2)
    monkeypatch.setattr(form_rows.QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(three), "")))
    before = np.asarray(widget.state.labels_layer.data).copy()
    for scope, mode in (("slice", "per-frame"), ("stack", "per-frame"), ("stack", "first-frame-propagate")):
        _click_auto(qtbot, widget, scope, mode)
        text = widget.status.text()
        assert "auto-segment failed: this prompt encoder needs a (N, Y, X, 3) stack" in text, text
        np.testing.assert_array_equal(widget.state.labels_layer.data, before)
        assert not widget.state.history.undo_stack and 2 not in widget.state.objects


# -- sam2med train --auto-prompt -----------------------------------------------------------
def _sam2med(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "napari_sam2med.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, SAM2MED_OFFLINE="1"))


def _npz(path, images, masks):
    np.savez(path, imgs=(np.stack(images) * 255).astype(np.uint8), gts=np.stack(masks).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def checkpoint(sam2, tmp_path_factory):
    from napari_sam2med.sam2.checkpoint import save_checkpoint

    return save_checkpoint(sam2, tmp_path_factory.mktemp("ckpt") / "sam2_test.pt")


MODEL = ["--model", "sam2.1-test", "--image-size", "256", "--device", "cpu", "--no-progress"]
RECIPE = ["--steps", "100", "--lr", "1e-2", "--no-augment", "--prompt-input-size", "64", "--prompt-width", "8",
          "--threads", "1"]


def test_train_auto_prompt_cli_writes_an_encoder_that_sam2med_auto_loads(tmp_path, checkpoint):
    import tifffile

    from napari_sam2med.auto.prompt_net import load_prompt_net
    from napari_sam2med.sam2.checkpoint import sha256_of

    train = _npz(tmp_path / "train.npz", *blobs(16, 0))
    val = _npz(tmp_path / "val.npz", *blobs(4, 1))
    run = tmp_path / "run"
    r = _sam2med("train", "--auto-prompt", "--data", train, val, "--val", "val", "--out", run,
                 "--checkpoint", checkpoint, *MODEL, *RECIPE)
    assert r.returncode == 0, r.stderr
    assert "trained 100 steps (100 in this run); no-click validation Dice" in r.stdout
    card = json.loads((run / "run_card.json").read_text())
    assert card["val_volumes"] == ["val"] and card["train_slices"] == 16
    assert card["val_dice"] >= 0.6, card["val_dice"]  # it learned the discs (an untrained encoder: ~0.06)
    _, rec = load_prompt_net(run / "prompt_encoder.pt")
    assert rec["name"] == "sam2.1-test" and int(rec["image_size"]) == 256
    extra = torch_load_extra(run / "prompt_encoder.pt")
    assert extra["sam2_checkpoint"]["checkpoint_sha256"] == sha256_of(checkpoint)
    assert (run / "run_card.md").is_file() and (run / "state.pt").is_file()

    stack, truth = blob_stack(4)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    r = _sam2med("auto", tmp_path / "stack.tif", "--prompt-encoder", run / "prompt_encoder.pt",
                 "--out", tmp_path / "labels.tif", "--checkpoint", checkpoint, "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert dice(tifffile.imread(tmp_path / "labels.tif") > 0, truth) >= 0.6

    # --resume continues from state.pt: a finished run has nothing left to train (same weights again)
    before = torch_load_extra(run / "prompt_encoder.pt", "prompt_encoder")
    args = ["train", "--auto-prompt", "--data", train, val, "--val", "val", "--out", run, "--resume",
            "--checkpoint", checkpoint, *MODEL]
    r = _sam2med(*args, *RECIPE)
    assert r.returncode == 0, r.stderr
    assert "trained 100 steps (0 in this run)" in r.stdout
    after = torch_load_extra(run / "prompt_encoder.pt", "prompt_encoder")
    assert all((before[k] == after[k]).all() for k in before)
    r = _sam2med(*args, *RECIPE[2:], "--steps", "120")  # another schedule: refused, one line
    assert r.returncode == 2 and "but recipe.steps is 120, not 100" in r.stderr, r.stderr


def torch_load_extra(path, key="extra"):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)[key]


def test_train_auto_prompt_bad_input_is_one_line(tmp_path, checkpoint):
    train = _npz(tmp_path / "train.npz", *blobs(2, 0))
    cases = [
        (["--preset", "lora"], "--preset trains SAM2 itself"),
        (["--object-id", "5"], "no slice of the training volumes holds label 5"),
        (["--prompt-input-size", "50"], "--prompt-input-size a multiple of 16"),
    ]
    for extra, message in cases:
        r = _sam2med("train", "--auto-prompt", "--data", train, "--out", tmp_path / "run", "--checkpoint",
                     checkpoint, *MODEL, *extra, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == f"sam2med train: error: {r.stderr.split('error: ', 1)[1].strip()}"
        assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_encoder_chooser_lists_shipped_encoders_then_open_file(qtbot, monkeypatch):
    pytest.importorskip("napari")
    from napari_sam2med._qt import auto_panel

    monkeypatch.setattr(auto_panel, "shipped_encoders", lambda: [])
    panel = auto_panel.AutoPanel()
    qtbot.addWidget(panel)
    items = lambda: [panel.encoder_combo.itemText(i) for i in range(panel.encoder_combo.count())]  # noqa: E731
    assert items() == ["Open file\u2026"] and panel.encoder() is None
    monkeypatch.setattr(auto_panel, "shipped_encoders", lambda: ["autosam2-faz"])
    panel = auto_panel.AutoPanel()
    qtbot.addWidget(panel)
    assert items() == ["autosam2-faz", "Open file\u2026"] and panel.encoder() == ("shipped", "autosam2-faz")
    panel.add_file("/x/mine.pt")
    assert items() == ["autosam2-faz", "mine.pt", "Open file\u2026"] and panel.encoder() == ("file", "/x/mine.pt")
    assert not panel.mode_combo.isEnabled()
    panel.scope_combo.setCurrentIndex(1)
    assert panel.mode_combo.isEnabled() and panel.video_mode() == "per-frame"


def test_a_shipped_encoder_is_loaded_through_the_shipped_registry(sam2, encoder, monkeypatch):
    pytest.importorskip("napari")
    from napari_sam2med._qt.auto_panel import load_encoder
    from napari_sam2med.auto import shipped
    from napari_sam2med.auto.prompt_net import PromptNetMismatch

    asked = []
    monkeypatch.setattr(shipped, "shipped_prompt_encoder_path", lambda name: asked.append(name) or encoder)
    assert load_encoder(("shipped", "discs"), sam2).config.input_size == 64 and asked == ["discs"]
    with pytest.raises(PromptNetMismatch, match="trained against other 'sam2.1-test' weights"):
        load_encoder(("shipped", "discs"), frozen_sam2(1))
