"""``sam2med train`` as a user runs it: a subprocess, progress, one-line errors, nothing partial."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

CLI = [sys.executable, "-m", "napari_sam2med.cli", "train"]
MODEL = ["--model", "sam2.1-test", "--random-init", "--image-size", "64", "--device", "cpu"]


def _run(*args, timeout=300):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_train_and_resume(npz_dir, tmp_path):
    out = tmp_path / "run"
    p = _run("--data", npz_dir, "--out", out, "--steps", "2", "--frames", "2", "--val-every", "1", *MODEL)
    assert p.returncode == 0, p.stderr
    assert "best validation Dice" in p.stdout
    for name in ("state.pt", "best.pt", "last.pt", "run_card.json", "run_card.md"):
        assert (out / name).is_file(), name
    p = _run("--data", npz_dir, "--out", out, "--steps", "3", "--frames", "2", "--resume", *MODEL)
    assert p.returncode == 0, p.stderr
    assert "trained 3 steps" in p.stdout


@pytest.mark.parametrize("case", ["missing", "empty_labels", "mismatch", "exists", "no_resume", "bad_val"])
def test_bad_input_one_line_nothing_written(tmp_path, npz_dir, case, capsys):
    """In-process through ``cli.main`` (the same error boundary as the console script; a subprocess
    per case would cost a torch import each)."""
    from napari_sam2med.cli import main

    out = tmp_path / "run"
    data = npz_dir
    extra = []
    if case == "missing":
        data = tmp_path / "nope"
    elif case in ("empty_labels", "mismatch"):
        img = np.zeros((4, 32, 32), np.uint8)
        lab = np.zeros((4, 32, 32) if case == "empty_labels" else (3, 32, 32), np.uint8)
        data = tmp_path / "bad.npz"
        np.savez(data, imgs=img, gts=lab)
    elif case == "exists":
        out.mkdir()
        (out / "something").write_text("x")
    elif case == "no_resume":
        extra = ["--resume"]
    elif case == "bad_val":
        extra = ["--val", "vol9"]
    code = main(["train", "--data", str(data), "--out", str(out), "--steps", "1", *extra, *MODEL])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("sam2med train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    if case != "exists":
        assert not out.exists()
