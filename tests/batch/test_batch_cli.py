"""``sam2med batch`` end to end (subprocesses, a LocalCluster of worker processes, the test model)."""

from __future__ import annotations

import csv
import json
import signal
import time

import numpy as np
import pytest
import tifffile
import zarr
from batch_testdata import MODEL_ARGS, blob_volume, make_study, prompts_for, sam2med, sam2med_popen

pytestmark = pytest.mark.timeout(300)


def _labels(path):
    if path.suffix == ".zarr":
        return zarr.open_array(str(path), mode="r")[:]
    return tifffile.imread(path)


def _sidecars(out):
    return sorted(out.glob("*_labels.*.json"))


def test_two_workers_match_propagate_and_corrupt_volume_fails_alone(tmp_path, test_checkpoint):
    manifest = make_study(tmp_path / "study")
    # A sixth, corrupt volume: its header reads (validation passes), no slice of its data does.
    bad = tmp_path / "study" / "corrupt.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ascontiguousarray(blob_volume(7).transpose(2, 1, 0)), np.eye(4)), str(bad))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 10])  # cut inside slice 0
    (tmp_path / "study" / "corrupt.prompts.json").write_text(json.dumps(prompts_for(7)))
    data = json.loads(manifest.read_text())
    data["volumes"].insert(2, {"image": "corrupt.nii.gz", "prompts": "corrupt.prompts.json", "out": "corrupt.tif"})
    manifest.write_text(json.dumps(data))
    out = tmp_path / "out"

    # `sam2med propagate` on each good volume, started alongside the batch (independent outputs).
    entries = [e for e in data["volumes"] if e["image"] != "corrupt.nii.gz"]
    runs = []
    for entry in entries:
        prompts = tmp_path / "study" / entry.get("prompts", entry["image"].split(".")[0] + ".prompts.json")
        expected = tmp_path / f"{entry['image']}.propagate.tif"
        runs.append((entry, expected, sam2med_popen(
            "propagate", str(tmp_path / "study" / entry["image"]), "--prompts", str(prompts),
            "--out", str(expected), "--checkpoint", str(test_checkpoint), *MODEL_ARGS)))

    try:
        res = sam2med("batch", str(manifest), "--out", str(out), "--workers", "2", "--retries", "1",
                      "--checkpoint", str(test_checkpoint), *MODEL_ARGS)
        assert res.returncode == 3, res.stderr
        assert "dask dashboard: http" in res.stderr
        with open(out / "failures.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["image"] for r in rows] == [str(bad)]
        assert "\n" not in rows[0]["error"] and "EOFError" in rows[0]["error"]
        assert not (out / "corrupt.tif").exists()
        assert len(_sidecars(out)) == 5
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left

        # Each good volume: exactly the labels `sam2med propagate` wrote for it.
        for entry, expected, proc in runs:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            want, got = tifffile.imread(expected), _labels(out / entry["out"])
            assert got.dtype == want.dtype and got.shape == want.shape == (6, 64, 64)
            assert set(np.unique(want)) > {0}  # something was segmented
            np.testing.assert_array_equal(got, want, err_msg=entry["image"])
            side = json.loads((out / (entry["out"] + ".json")).read_text())
            assert side["model"] == "sam2.1-test" and side["device"] == "cpu" and side["seconds"] > 0
            assert len(side["checkpoint_sha256"]) == 64
    finally:  # never leave a propagate process behind when an assertion fails early
        for *_, proc in runs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_killed_batch_resumes_and_skips_finished(tmp_path, test_checkpoint):
    # Longer volumes and one worker, so the batch is still running when it is terminated.
    study = tmp_path / "study"
    manifest = make_study(study, suffixes=(".tif",))
    for k in range(5):
        tifffile.imwrite(study / f"vol{k}.tif", blob_volume(k, n=30))
    out = tmp_path / "out"
    args = ["batch", str(manifest), "--out", str(out), "--workers", "1", "--checkpoint", str(test_checkpoint),
            *MODEL_ARGS]
    proc = sam2med_popen(*args)
    deadline = time.monotonic() + 200
    while not _sidecars(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    done = {p: p.stat().st_mtime_ns for p in _sidecars(out)}
    labels = {p: p.with_suffix("").stat().st_mtime_ns for p in done}
    assert 1 <= len(done) < 5, "the batch was not stopped midway"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nothing half-written

    res = sam2med(*args)
    assert res.returncode == 0, res.stderr
    assert f"{5 - len(done)} written, {len(done)} skipped" in res.stdout
    assert len(_sidecars(out)) == 5
    for side, mtime in done.items():  # finished volumes untouched
        assert side.stat().st_mtime_ns == mtime and side.with_suffix("").stat().st_mtime_ns == labels[side]
    for k in range(5):
        assert _labels(out / json.loads(manifest.read_text())["volumes"][k]["out"]).shape == (30, 64, 64)


def test_bad_manifest_fails_before_any_work_listing_all(tmp_path, test_checkpoint):
    manifest = make_study(tmp_path / "study")
    data = json.loads(manifest.read_text())
    data["volumes"][0]["image"] = "missing0.tif"
    data["volumes"][2]["prompts"] = "missing2.json"
    data["volumes"][3]["out"] = "vol3_labels.png"
    data["volumes"][4]["box"] = [99, 1, 1, 5, 5]  # slice out of range (and prompts too: both given)
    data["volumes"].append({"image": "vol1.npy", "box": [0, 500, 500, 600, 600]})  # box outside the slice
    data["volumes"].append({"image": "vol1.npy", "auto": True})  # no --prompt-encoder given
    manifest.write_text(json.dumps(data))
    out = tmp_path / "out"
    res = sam2med("batch", str(manifest), "--out", str(out), "--checkpoint", str(test_checkpoint), *MODEL_ARGS,
                  timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert all(line.startswith("sam2med batch: error: manifest.json entry ") for line in lines), lines
    text = res.stderr
    assert "entry 1 (missing0.tif): image not found" in text
    assert "entry 3 (vol2.tif): prompts file not found" in text and "missing2.json" in text
    assert "entry 4 (vol3.nii.gz): labels output 'vol3_labels.png'" in text
    assert "entry 5 (vol4.tif): give exactly one of prompts, box or auto" in text
    assert "entry 6 (vol1.npy): prompt #0: box" in text and "outside the 64x64 slice" in text
    assert "entry 7 (vol1.npy): auto entries need an AutoSAM2 prompt encoder (--prompt-encoder" in text
    assert len(lines) == 6
    assert not out.exists()  # nothing started, nothing written
