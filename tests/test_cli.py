"""``sam2med propagate`` end to end with a random-init model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_sam2med.cli import main

oracle = pytest.importorskip("oracle")


@pytest.fixture
def stack_file(tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, oracle.blob_stack(6, 48))
    return path


def _prompts(tmp_path, data):
    p = tmp_path / "prompts.json"
    p.write_text(json.dumps(data))
    return p


GOOD = {"prompts": [
    {"object": 1, "slice": 0, "points": [[17, 17], [40, 40]], "labels": [1, 0]},
    {"object": 2, "slice": 0, "box": [25, 20, 37, 34]},
    {"object": 1, "slice": 4, "points": [[18, 17]], "labels": [0]},
]}
ARGS = ["--model", "sam2.1-test", "--random-init", "--image-size", "64", "--no-progress"]


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_propagate_writes_labels(tmp_path, stack_file, suffix):
    out = tmp_path / f"labels{suffix}"
    rc = main(["propagate", str(stack_file), "--prompts", str(_prompts(tmp_path, GOOD)), "--out", str(out)] + ARGS)
    assert rc == 0 and out.exists()
    if suffix == ".tif":
        labels = tifffile.imread(out)
    else:
        import zarr

        labels = zarr.open_array(str(out), mode="r")[:]
    assert labels.shape == (6, 48, 48)
    assert np.issubdtype(labels.dtype, np.integer)
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert not list(tmp_path.glob(".labels*"))  # no temp files left


@pytest.mark.parametrize("case", ["missing_stack", "bad_json", "out_of_range", "bad_suffix", "empty", "2d_stack"])
def test_bad_input_one_line_error(tmp_path, stack_file, capsys, case):
    prompts = _prompts(tmp_path, GOOD)
    stack = str(stack_file)
    out = tmp_path / "labels.tif"
    if case == "missing_stack":
        stack = str(tmp_path / "nope.tif")
    elif case == "bad_json":
        prompts.write_text("{not json")
    elif case == "out_of_range":
        prompts = _prompts(tmp_path, {"prompts": [{"object": 1, "slice": 0, "points": [[500, 3]]}]})
    elif case == "bad_suffix":
        out = tmp_path / "labels.png"
    elif case == "empty":
        prompts = _prompts(tmp_path, {"prompts": []})
    elif case == "2d_stack":
        np.save(stack_file, np.zeros((48, 48), np.uint8))
    rc = main(["propagate", stack, "--prompts", str(prompts), "--out", str(out)] + ARGS)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("sam2med propagate: error:") and "\n" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
