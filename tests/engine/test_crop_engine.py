"""Crop-around-the-prompt inference in the engine (``engine.crop``, ``segment_to_file(crop_context=)``,
``sam2med propagate --crop-context``): each object is segmented in its own window and pasted back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import crop_oracle  # tests/crop_oracle.py
import numpy as np
import pytest
import tifffile
import torch

from napari_sam2med.engine import PromptSet, Session, run_to_end
from napari_sam2med.engine.crop import window_from_box
from napari_sam2med.engine.propagation import merge_masks
from napari_sam2med.engine.volume import segment_to_file
from napari_sam2med.io import FrameStack

oracle = pytest.importorskip("oracle")

SIZE = 96
BOX1 = [20, 20, 47, 47]  # its window (81 px) leaves the slice at the top and left: padding is exercised
PTS2 = [[62, 57], [66, 60]]
PROMPTS = {"prompts": [{"object": 1, "slice": 3, "box": BOX1},
                       {"object": 2, "slice": 4, "points": PTS2, "labels": [1, 1]}]}
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An int16 stack (windowed, so padding must map to black), prompts and a perturbed test checkpoint."""
    d = tmp_path_factory.mktemp("crop_engine")
    torch.save({"model": oracle.perturbed_test_model(seed=3).state_dict()}, d / "m.pt")
    np.save(d / "stack.npy", oracle.blob_stack(8, SIZE).astype(np.int16) * 10 - 500)
    (d / "prompts.json").write_text(json.dumps(PROMPTS))
    return d


def _model(d):
    from napari_sam2med.sam2 import load_model

    return load_model("sam2.1-test", image_size=64, checkpoint=d / "m.pt", device="cpu")


def _stack(d):
    return FrameStack(np.load(d / "stack.npy"))


def _segment(d, tmp_path, crop_context, name="out.tif"):
    stack = _stack(d)
    prompts = PromptSet.from_json(PROMPTS, len(stack), stack.frame_shape)
    out = run_to_end(segment_to_file(_model(d), stack, prompts, tmp_path / name, crop_context=crop_context))
    return tifffile.imread(out)


def test_no_crop_is_todays_output(files, tmp_path):
    stack = _stack(files)
    s = Session(_model(files), stack)
    s.prompts = PromptSet.from_json(PROMPTS, len(stack), stack.frame_shape)
    today = run_to_end(s.propagate("both"))
    assert set(np.unique(today)) == {0, 1, 2}
    # the test model has no crop_context: the default (None = the model's) and 0 are whole slices
    np.testing.assert_array_equal(_segment(files, tmp_path, None, "a.tif"), today)
    np.testing.assert_array_equal(_segment(files, tmp_path, 0, "b.tif"), today)


def test_crop_equals_manual_per_object_sessions(files, tmp_path):
    got = _segment(files, tmp_path, 3.0)
    stack = _stack(files)
    data = np.load(files / "stack.npy")
    lo = stack.window[0]
    model = _model(files)
    # by hand: the window rule on each object's prompt box, a Session on the cut stack, pasted back
    wins = {1: window_from_box(BOX1, 3.0, 32, (SIZE, SIZE)),
            2: window_from_box((62, 57, 66, 60), 3.0, 32, (SIZE, SIZE))}
    assert wins[1][0] < 0 and wins[2][2] == 32
    pred = {}
    for oid, win in wins.items():
        sub = FrameStack(crop_oracle.cut(data, win, np.int16(np.floor(lo))), window=stack.window)
        s = Session(model, sub)
        r0, c0, _ = win
        if oid == 1:
            s.set_box(1, 3, [BOX1[0] - r0, BOX1[1] - c0, BOX1[2] - r0, BOX1[3] - c0])
        else:
            s.add_points(1, 4, [[r - r0, c - c0] for r, c in PTS2], [1, 1])
        lab = run_to_end(s.propagate("both"))
        pred[oid] = np.stack([crop_oracle.paste(lab[z] == 1, win, SIZE) for z in range(len(lab))])
        assert pred[oid].any()
    want = np.stack([merge_masks(np.zeros((SIZE, SIZE), np.uint8), {1: pred[1][z], 2: pred[2][z]})
                     for z in range(len(data))])
    np.testing.assert_array_equal(got, want)
    inside = np.zeros((SIZE, SIZE), bool)
    for win in wins.values():
        inside |= crop_oracle.paste(np.ones((win[2], win[2]), bool), win, SIZE)
    assert not got[:, ~inside].any()  # nothing outside the windows
    assert set(np.unique(got)) == {0, 1, 2}


def test_registry_crop_context():
    from napari_sam2med.sam2.configs import MODEL_CONFIGS

    assert MODEL_CONFIGS["sam2med-small-ct"].crop_context == 3.0
    assert MODEL_CONFIGS["sam2.1-tiny"].crop_context is None


def test_propagate_crop_context_subprocess(files, tmp_path):
    out = tmp_path / "cli.tif"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "SAM2MED_OFFLINE": "1"}
    argv = [sys.executable, "-m", "napari_sam2med.cli", "propagate", str(files / "stack.npy"),
            "--prompts", str(files / "prompts.json"), "--model", "sam2.1-test",
            "--checkpoint", str(files / "m.pt"), "--image-size", "64", "--device", "cpu", "--no-progress"]
    res = subprocess.run([*argv, "--out", str(out), "--crop-context", "3"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(tifffile.imread(out), _segment(files, tmp_path, 3.0))
    bad = tmp_path / "bad.tif"
    res = subprocess.run([*argv, "--out", str(bad), "--crop-context", "0.5"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 2 and "--crop-context" in res.stderr and not bad.exists()


def test_propagate_session_for_a_session_holder(files, tmp_path):
    """The widget's path: a Session's propagation, cropped, writes the same labels and full-size step masks."""
    from napari_sam2med.engine.crop import propagate_session

    stack = _stack(files)
    s = Session(_model(files), stack)
    s.prompts = PromptSet.from_json(PROMPTS, len(stack), stack.frame_shape)
    steps = []
    got = run_to_end(propagate_session(s, 3.0, direction="both"), steps.append)
    np.testing.assert_array_equal(got, _segment(files, tmp_path, 3.0))
    assert len(steps) == 2 * len(stack) and steps[-1].done == steps[-1].total
    assert all(m.shape == (SIZE, SIZE) for st in steps for m in st.masks.values())
