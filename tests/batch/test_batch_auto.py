"""``sam2med batch`` with ``auto: true`` entries: no prompts, an AutoSAM2 prompt encoder (issue 13)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auto"))  # auto_testdata

from auto_testdata import blob_stack, frozen_sam2, train_encoder  # noqa: E402
from batch_testdata import fill_dock, sam2med  # noqa: E402

from napari_sam2med.engine.metrics import dice  # noqa: E402

MODEL = ["--model", "sam2.1-test", "--image-size", "256", "--device", "cpu", "--no-progress", "--workers", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, prompt encoder): the frozen test SAM2 at 256 px saved, and an encoder trained against it."""
    from napari_sam2med.sam2.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("auto")
    model = frozen_sam2(0)
    return save_checkpoint(model, folder / "sam2_test.pt"), train_encoder(model, folder / "discs.pt")


def _study(folder: Path):
    folder.mkdir()
    truths = {}
    entries = []
    for k in range(2):
        stack, truth = blob_stack(4, seed=7 + k)
        tifffile.imwrite(folder / f"vol{k}.tif", stack)
        entries.append({"image": f"vol{k}.tif", "auto": True, "out": f"vol{k}_labels.tif"})
        truths[k] = truth
    stack, _ = blob_stack(4, seed=9)
    tifffile.imwrite(folder / "prompted.tif", stack)
    entries.append({"image": "prompted.tif", "box": [0, 10, 10, 40, 40]})  # prompted and auto entries mix
    (folder / "manifest.json").write_text(json.dumps({"volumes": entries}))
    return folder / "manifest.json", truths


def test_batch_auto_entries_are_segmented_without_prompts(tmp_path, trained):
    ckpt, encoder = trained
    manifest, truths = _study(tmp_path / "study")
    out = tmp_path / "out"
    args = ["batch", str(manifest), "--out", str(out), "--prompt-encoder", str(encoder), "--checkpoint", str(ckpt),
            *MODEL]
    res = sam2med(*args)
    assert res.returncode == 0, res.stderr
    assert "3 written, 0 skipped" in res.stdout
    for k, truth in truths.items():
        labels = tifffile.imread(out / f"vol{k}_labels.tif")
        assert set(np.unique(labels)) <= {0, 1}
        assert dice(labels == 1, truth) >= 0.6, k
        side = json.loads((out / f"vol{k}_labels.tif.json").read_text())
        assert side["key"]["auto"] is True and side["key"]["video_mode"] == "per-frame"
        assert side["prompts_source"] == "auto" and len(side["key"]["prompt_encoder_sha256"]) == 64
    assert "auto" not in json.loads((out / "prompted_labels.tif.json").read_text())["key"]
    res = sam2med(*args)  # a rerun finds everything done
    assert res.returncode == 0 and "0 written, 3 skipped" in res.stdout, res.stderr


def test_batch_refuses_a_prompt_encoder_of_other_sam2_weights(tmp_path, trained):
    from napari_sam2med.auto.prompt_net import load_prompt_net, save_prompt_net

    ckpt, encoder = trained
    other = save_prompt_net(tmp_path / "other.pt", load_prompt_net(encoder)[0], frozen_sam2(1))
    manifest, _ = _study(tmp_path / "study")
    out = tmp_path / "out"
    res = sam2med("batch", str(manifest), "--out", str(out), "--prompt-encoder", str(other), "--checkpoint",
                  str(ckpt), *MODEL, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("sam2med batch: error: other.pt was trained against other 'sam2.1-test' weights")
    assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()


# -- the Batch dock: the same option, through the user's path ------------------------------------
DOCK = "Batch (many volumes)"  # napari.yaml's display name


def _batch_dock(make_napari_viewer, monkeypatch, manifest, out, ckpt, chosen):
    """The Batch dock opened as the Plugins menu does, filled in; "Open file…" answers with ``chosen``."""
    pytest.importorskip("napari")
    from qtpy.QtWidgets import QFileDialog

    monkeypatch.setenv("SAM2MED_DEV", "1")  # offers the sam2.1-test model
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(chosen), "")))
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-sam2med", DOCK)
    fill_dock(w, manifest, out, ckpt, size=256)
    return w


def _choose_file(w) -> None:
    """The user picks "Open file…" in the chooser (the patched dialog answers)."""
    last = w.encoder_combo.count() - 1
    assert w.encoder_combo.itemText(last) == "Open file\u2026"
    w.encoder_combo.setCurrentIndex(last)
    w.encoder_combo.activated.emit(last)


def _click_run(qtbot, w) -> str:
    from qtpy.QtCore import Qt

    qtbot.mouseClick(w.run_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.is_busy(), timeout=240_000)
    return w.status.text()


@pytest.mark.timeout(300)
def test_batch_dock_segments_auto_entries_with_a_prompt_encoder(make_napari_viewer, monkeypatch, qtbot, tmp_path,
                                                                trained):
    ckpt, encoder = trained
    manifest, truths = _study(tmp_path / "study")
    out = tmp_path / "out"
    w = _batch_dock(make_napari_viewer, monkeypatch, manifest, out, ckpt, encoder)
    assert w.encoder_combo.itemText(0) == "none" and w.encoder_combo.encoder() == ("none", "")
    assert not w.mode_combo.isEnabled()

    text = _click_run(qtbot, w)  # "none": auto entries are refused, nothing runs
    assert text.startswith("Error:") and "auto entries need an AutoSAM2 prompt encoder" in text, text
    assert not out.exists()

    _choose_file(w)
    assert w.encoder_combo.encoder() == ("file", str(encoder)) and w.encoder_combo.currentText() == "discs.pt"
    assert w.mode_combo.isEnabled()
    w.mode_combo.setCurrentIndex(w.mode_combo.findData("first-frame-propagate"))
    text = _click_run(qtbot, w)
    assert text.startswith("Done: 3 written, 0 skipped"), text
    assert w.results.count() == 3
    for k, truth in truths.items():
        labels = tifffile.imread(out / f"vol{k}_labels.tif")
        assert set(np.unique(labels)) <= {0, 1} and dice(labels[0] == 1, truth[0]) >= 0.6, k
        key = json.loads((out / f"vol{k}_labels.tif.json").read_text())["key"]
        assert key["auto"] is True and key["video_mode"] == "first-frame-propagate"
        assert len(key["prompt_encoder_sha256"]) == 64
    assert _click_run(qtbot, w).startswith("Done: 0 written, 3 skipped")  # as the CLI: a rerun finds them done


@pytest.mark.timeout(300)
def test_batch_dock_refuses_a_prompt_encoder_of_other_sam2_weights(make_napari_viewer, monkeypatch, qtbot, tmp_path,
                                                                   trained):
    from napari_sam2med.auto.prompt_net import load_prompt_net, save_prompt_net

    ckpt, encoder = trained
    other = save_prompt_net(tmp_path / "other.pt", load_prompt_net(encoder)[0], frozen_sam2(1))
    manifest, _ = _study(tmp_path / "study")
    out = tmp_path / "out"
    w = _batch_dock(make_napari_viewer, monkeypatch, manifest, out, ckpt, other)
    w.encoder_combo.setCurrentIndex(w.encoder_combo.count() - 1)  # "Open file…": Run asks for the file first
    text = _click_run(qtbot, w)
    assert text.startswith("Error: other.pt was trained against other 'sam2.1-test' weights"), text
    assert "\n" not in text and not out.exists()
