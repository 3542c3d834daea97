"""``sam2med propagate --memory slm``: the CLI writes what a Session with SLM memory predicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2med.cli import main

oracle = pytest.importorskip("oracle")

PROMPTS = {"prompts": [{"object": 1, "slice": 3, "points": [[17, 17]], "labels": [1]},
                       {"object": 2, "slice": 3, "box": [25, 20, 37, 34]}]}
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A stack, prompts, and an SLM checkpoint whose SLM modules are far from the identity."""
    from napari_sam2med.sam2 import SLMConfig
    from napari_sam2med.sam2.slm import attach_slm

    d = tmp_path_factory.mktemp("slm_cli")
    model = attach_slm(oracle.perturbed_test_model(seed=1), SLMConfig(short_init_scale=1.0))
    torch.save({"model": model.state_dict()}, d / "slm.pt")
    np.save(d / "stack.npy", oracle.blob_stack(8, 48))
    (d / "prompts.json").write_text(json.dumps(PROMPTS))
    return d


def _session_labels(d, memory):
    from napari_sam2med.engine import PromptSet, Session, run_to_end
    from napari_sam2med.io import FrameStack
    from napari_sam2med.sam2 import load_model

    stack = FrameStack(np.load(d / "stack.npy"))
    model = load_model("sam2.1-test", image_size=64, checkpoint=d / "slm.pt", device="cpu")
    s = Session(model, stack, memory=memory)
    s.prompts = PromptSet.from_json(PROMPTS, len(stack), stack.frame_shape)
    return run_to_end(s.propagate("both"))


def _argv(d, out, memory):
    return ["propagate", str(d / "stack.npy"), "--prompts", str(d / "prompts.json"), "--out", str(out),
            "--model", "sam2.1-test", "--checkpoint", str(d / "slm.pt"), "--image-size", "64",
            "--device", "cpu", "--no-progress", "--memory", memory]


def test_propagate_memory_slm_subprocess(files, tmp_path):
    out = tmp_path / "slm.tif"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "SAM2MED_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "napari_sam2med.cli", *_argv(files, out, "slm")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    got = tifffile.imread(out)
    slm = _session_labels(files, "slm")
    sam2 = _session_labels(files, "sam2")
    assert set(np.unique(slm)) == {0, 1, 2}
    np.testing.assert_array_equal(got, slm)
    assert (slm != sam2).any()  # the flag really switches the memory


def test_propagate_memory_sam2_and_bad_value(files, tmp_path, capsys):
    out = tmp_path / "sam2.tif"
    assert main(_argv(files, out, "sam2")) == 0
    np.testing.assert_array_equal(tifffile.imread(out), _session_labels(files, "sam2"))
    with pytest.raises(SystemExit) as exc:
        main(_argv(files, tmp_path / "x.tif", "lstm"))
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists()
