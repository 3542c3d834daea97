"""The offline default (issue 18): with no official checkpoint cached, the CLI and the model panel offer the
model shipped with the plugin, say what it is and where its card is, and never pick random weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
PLUGIN = "napari-sam2med"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("SAM2MED_CACHE", str(cache))
    return cache


def _fake_cached(cache: Path, name: str) -> None:
    from napari_sam2med.sam2 import get_config

    (cache / get_config(name).weights.filename).write_bytes(b"not really weights")


def test_default_model_rule(empty_cache):
    from napari_sam2med.sam2 import get_config
    from napari_sam2med.sam2.defaults import default_model, shipped_models

    pick = default_model(offline=True)
    assert pick.shipped and pick.name in shipped_models() and pick.name == "sam2med-small-ct"
    assert get_config(pick.name).weights is not None  # real weights, never a random-init config
    assert "offline" in pick.reason and pick.name in pick.reason and "card" in pick.reason
    assert Path(pick.card).is_file() and "MODEL_CARD" in Path(pick.card).name
    _fake_cached(empty_cache, "sam2.1-small")
    pick = default_model()
    assert (pick.name, pick.shipped) == ("sam2.1-small", False) and str(empty_cache) in pick.reason
    _fake_cached(empty_cache, "sam2.1-tiny")  # the first official model in registry order wins
    assert default_model().name == "sam2.1-tiny"
    assert default_model().card.startswith("https://")


def test_nothing_available_is_an_error_not_random_weights(empty_cache, monkeypatch):
    import argparse

    from napari_sam2med import _cli_utils
    from napari_sam2med.sam2 import defaults

    monkeypatch.setattr(defaults, "shipped_models", lambda: [])
    with pytest.raises(RuntimeError, match="no model ships"):
        defaults.default_model()
    p = argparse.ArgumentParser()
    _cli_utils.add_model_args(p)
    args = p.parse_args([])
    assert args.model == _cli_utils.MODEL_NOT_GIVEN and not args.random_init
    with pytest.raises(_cli_utils.UserError, match="--model NAME"):
        _cli_utils.apply_model_default("propagate", args)
    args = p.parse_args(["--random-init"])  # random weights only when asked for, on the usual architecture
    _cli_utils.apply_model_default("propagate", args)
    assert args.model == "sam2.1-tiny" and args.random_init


def test_cli_without_model_uses_the_shipped_model_and_says_so(empty_cache, tmp_path):
    from napari_sam2med._sample_data import synthetic_volume

    image, truth = synthetic_volume((12, 64, 64), seed=0)
    np.save(tmp_path / "vol.npy", image)
    rows, cols = np.nonzero(truth[6] == 3)
    prompts = {"prompts": [{"object": 1, "slice": 6,
                            "box": [int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())]}]}
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    env = {**os.environ, "PYTHONPATH": SRC, "SAM2MED_CACHE": str(empty_cache), "SAM2MED_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "napari_sam2med.cli", "propagate", str(tmp_path / "vol.npy"), "--prompts",
           str(tmp_path / "p.json"), "--out", str(tmp_path / "o.tif"), "--window", "-160", "240", "--no-progress",
           "--device", "cpu"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if "using model" in line]
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("sam2med propagate: using model sam2med-small-ct: no official SAM2 checkpoint is cached")
    assert "shipped with the plugin" in line and "offline mode is on" in line
    card = line.split("card: ")[1].split(";")[0]
    assert Path(card).is_file() and (tmp_path / "o.tif").is_file()
    assert "RANDOM" not in res.stderr + res.stdout


def test_bad_input_without_model_is_still_one_line(empty_cache, tmp_path, capsys):
    from napari_sam2med.cli import main

    argv = ["propagate", str(tmp_path / "missing.npy"), "--prompts", str(tmp_path / "p.json"),
            "--out", str(tmp_path / "o.tif")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sam2med propagate: error:")  # no model line before it


def test_panel_preselects_the_shipped_model_with_its_card(make_napari_viewer, qtbot, empty_cache, monkeypatch):
    from qtpy.QtGui import QDesktopServices

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "SAM2 segment & propagate")
    panel = widget.model_panel
    assert panel.choice().name == "sam2med-small-ct" and not panel.choice().random_init
    assert panel.random_init.isHidden() and not panel.random_init.isChecked()
    assert panel.choice().image_size == 128  # the model's own input size
    assert not panel.default_note.isHidden() and "shipped with the plugin" in panel.default_note.text()
    assert "no official SAM2 checkpoint is cached" in panel.default_note.text()
    assert "sam2med small CT" in panel.about_label.text() and "no download" in panel.about_label.text()
    assert panel.weights_label.text().startswith("shipped with the plugin:")
    assert not panel.download_button.isEnabled()  # nothing to download
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    panel.card_button.click()
    assert len(opened) == 1 and opened[0].isLocalFile()
    card = Path(opened[0].toLocalFile())
    assert card.is_file() and "sam2med-small-ct" in card.read_text()
    with qtbot.waitSignal(panel.model_loaded, timeout=60000):
        panel.load_button.click()
    assert widget.model.config.name == "sam2med-small-ct"
    assert "sam2med-small-ct @ 128 px" in widget.status.text() and "shipped weights" in widget.status.text()
    assert "RANDOM" not in widget.status.text()
    panel.set_choice(name="sam2.1-tiny")  # an official model: its card is a web page
    assert panel.download_button.isEnabled() and "no weights found" in panel.weights_label.text()
    panel.card_button.click()
    assert opened[-1].toString().startswith("https://github.com/facebookresearch/sam2")


def test_panel_prefers_a_cached_official_checkpoint(qtbot, empty_cache):
    from napari_sam2med._qt.model_panel import ModelPanel

    _fake_cached(empty_cache, "sam2.1-tiny")
    panel = ModelPanel()
    qtbot.addWidget(panel)
    assert panel.choice().name == "sam2.1-tiny" and panel.default_note.isHidden()
    assert panel.weights_label.text().startswith("cached:")
