"""``sam2med evaluate`` end to end on synthetic volumes with a random-init test model, and bad input."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_sam2med import cli
from napari_sam2med.engine import metrics as M
from napari_sam2med.train.synthetic import SyntheticVolumeConfig, make_volume

MODEL = ["--model", "sam2.1-test", "--random-init", "--device", "cpu", "--no-progress"]


def _npz(path, shape=(5, 64, 64), seed=0, spacing=(0.5, 0.5, 3.0), n_objects=(1, 2)):
    img, lab = make_volume(SyntheticVolumeConfig(shape=shape, n_objects=n_objects), seed)
    np.savez(path, imgs=img, gts=lab.astype(np.uint8), spacing=np.asarray(spacing))  # ITK (x, y, z) order
    return img, lab


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_evaluate_subprocess_writes_everything(tmp_path):
    img, lab = _npz(tmp_path / "vol.npz", n_objects=(1, 1))  # one object: the written mask is its prediction
    out = tmp_path / "eval"
    r = subprocess.run([sys.executable, "-m", "napari_sam2med.cli", "evaluate", "--data", str(tmp_path / "vol.npz"),
                        "--out", str(out), "--protocol", "box-middle", *MODEL],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "RANDOM WEIGHTS" in r.stdout
    objs = _rows(out / "objects.csv")
    ids = sorted(set(np.unique(lab).tolist()) - {0})
    assert [int(o["object"]) for o in objs] == ids
    for key in ("dice", "iou", "hd95", "surface_dice", "over_propagation", "slice_dice", "spacing", "key_slice"):
        assert key in objs[0]
    # spacing is reported (z, y, x) although the .npz stores ITK (x, y, z)
    assert objs[0]["spacing"] == "3x0.5x0.5"
    pred = tifffile.imread(out / "masks" / "vol.tif")
    assert pred.shape == lab.shape
    # the CSV's scores are those of the written mask
    (o,) = objs
    assert float(o["dice"]) == pytest.approx(M.dice(pred == 1, lab == 1), abs=1e-5)
    assert float(o["hd95"]) == pytest.approx(M.hd95(pred == 1, lab == 1, (3.0, 0.5, 0.5)), rel=1e-4)
    assert int(o["key_slice"]) == int(np.argmax((lab == 1).sum(axis=(1, 2))))
    slices = _rows(out / "slices.csv")
    assert [int(r["slice"]) for r in slices] == [z for z in range(len(lab)) if (lab[z] | pred[z]).any()]
    vols = _rows(out / "volumes.csv")
    assert len(vols) == 1 and float(vols[0]["dice"]) == pytest.approx(M.dice(pred > 0, lab > 0), abs=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_init"] is True and summary["objects"] == len(ids)
    png = out / "overlays" / "vol.png"
    assert png.exists() and png.stat().st_size > 1000


@pytest.mark.parametrize("protocol", ["mask-one-slice", "points-k"])
def test_other_protocols_nifti_pairs_in_process(tmp_path, protocol, capsys):
    """IMAGE=LABELS NIfTI pairs: spacing from the header, masks written as NIfTI in the same geometry."""
    from napari_sam2med.io import read_spacing, write_labels

    img, lab = make_volume(SyntheticVolumeConfig(shape=(4, 64, 64)), 3)
    write_labels(tmp_path / "a.nii.gz", img, scale=(2.5, 0.8, 0.8))
    write_labels(tmp_path / "a_seg.nii.gz", lab.astype(np.uint8), scale=(2.5, 0.8, 0.8))
    out = tmp_path / "ev"
    rc = cli.main(["evaluate", "--data", f"{tmp_path / 'a.nii.gz'}={tmp_path / 'a_seg.nii.gz'}", "--out", str(out),
                   "--protocol", protocol, "--points", "2", "--no-overlays", "--mask-format", ".nii.gz",
                   "--crop-context", "3", *MODEL])
    assert rc == 0, capsys.readouterr().err
    mask = out / "masks" / "a.nii.gz"
    assert mask.exists() and not (out / "overlays").exists()
    assert read_spacing(mask) == pytest.approx((2.5, 0.8, 0.8))
    rows = _rows(out / "objects.csv")
    assert rows and all(r["protocol"] == protocol and r["spacing"] == "2.5x0.8x0.8" for r in rows)


def _bad(args, capsys):
    rc = cli.main(["evaluate", *args, *MODEL])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_bad_inputs_one_line_nothing_written(tmp_path, capsys):
    img, lab = _npz(tmp_path / "ok.npz")
    out = tmp_path / "ev"
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "lab_short.npy", lab[:3])
    np.save(tmp_path / "empty.npy", np.zeros_like(lab))
    np.save(tmp_path / "flat.npy", img[0])
    np.save(tmp_path / "float.npy", lab + 0.5)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "labels").mkdir()
    np.save(tmp_path / "set" / "images" / "a.npy", img)  # labels/a.npy is missing
    cases = {
        "no such file": ["--data", str(tmp_path / "missing.npz")],
        "differ": ["--data", f"{tmp_path / 'img.npy'}={tmp_path / 'lab_short.npy'}"],
        "labels/a.npy is missing": ["--data", str(tmp_path / "set")],
        "lab_missing.npy": ["--data", f"{tmp_path / 'img.npy'}={tmp_path / 'lab_missing.npy'}"],
        "empty": ["--data", f"{tmp_path / 'img.npy'}={tmp_path / 'empty.npy'}"],
        "(Z, Y, X)": ["--data", f"{tmp_path / 'flat.npy'}={tmp_path / 'flat.npy'}"],
        "integers": ["--data", f"{tmp_path / 'img.npy'}={tmp_path / 'float.npy'}"],
        "junk.npz": ["--data", str(tmp_path / "junk.npz")],
        "checkpoint": ["--data", str(tmp_path / "ok.npz")],
    }
    for expect, args in cases.items():
        extra = ["--checkpoint", str(tmp_path / "none.pt")] if expect == "checkpoint" else []
        model = MODEL if not extra else ["--model", "sam2.1-test", "--device", "cpu", "--no-progress"]
        rc = cli.main(["evaluate", *args, "--out", str(out), *extra, *model])
        err = capsys.readouterr().err.strip()
        assert rc == 2, (expect, err)
        assert len(err.splitlines()) == 1 and expect in err, (expect, err)
        assert not out.exists() and not list(tmp_path.glob(".ev*")), expect
    out.mkdir()
    rc = cli.main(["evaluate", "--data", str(tmp_path / "ok.npz"), "--out", str(out), *MODEL])
    assert rc == 2 and "already exists" in capsys.readouterr().err


def test_interrupt_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Ctrl-C while propagating, or while the report is being written: exit 130, no EVAL_DIR, no temp folder."""
    _npz(tmp_path / "ok.npz", shape=(4, 64, 64))
    from napari_sam2med.eval import report, runner

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    out = tmp_path / "ev"
    with monkeypatch.context() as m:
        m.setattr(report, "write_labels", interrupt)  # CSVs and summary are already written by then
        assert cli.main(["evaluate", "--data", str(tmp_path / "ok.npz"), "--out", str(out), *MODEL]) == 130
    assert [p.name for p in tmp_path.iterdir()] == ["ok.npz"]

    def boom(*a, **k):
        yield runner.EvalStep("ok", 1, 1, 4)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate", boom)
    assert cli.main(["evaluate", "--data", str(tmp_path / "ok.npz"), "--out", str(out), *MODEL]) == 130
    assert [p.name for p in tmp_path.iterdir()] == ["ok.npz"]
