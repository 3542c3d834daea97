"""Manifest reading and validation (no cluster): CSV and JSON agree, folders, every problem listed."""

from __future__ import annotations

import json

import pytest
from batch_testdata import make_study

from napari_sam2med.batch.manifest import ManifestError, load_folder, load_jobs, load_manifest


def test_csv_and_json_give_the_same_jobs(tmp_path):
    manifest = make_study(tmp_path / "study", n=3)
    entries = json.loads(manifest.read_text())["volumes"]
    rows = ["image,prompts,box,auto,out"]
    for e in entries:
        box = " ".join(str(v) for v in e["box"]) if "box" in e else ""
        rows.append(f"{e['image']},{e.get('prompts', '')},{box},,{e['out']}")
    csv_path = tmp_path / "study" / "manifest.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    from_json, from_csv = load_manifest(manifest, out), load_manifest(csv_path, out)
    assert from_json == from_csv
    assert [j.out for j in from_json] == [(out / e["out"]).resolve() for e in entries]
    assert from_json[1].prompts == {"prompts": [{"object": 1, "slice": 0, "box": [4.0, 4.0, 20.0, 24.0]}]}
    assert from_json[0].image == (tmp_path / "study" / "vol0.tif").resolve()  # relative to the manifest


def test_folder_pairs_volumes_with_prompt_files(tmp_path):
    make_study(tmp_path / "study", n=3)
    jobs = load_jobs(tmp_path / "study", tmp_path / "out")
    assert [j.image.name for j in jobs] == ["vol0.tif", "vol1.npy", "vol2.tif"]
    assert [j.out.name for j in jobs] == ["vol0_labels.tif", "vol1_labels.tif", "vol2_labels.tif"]
    (tmp_path / "study" / "vol0.prompts.json").unlink()
    with pytest.raises(ManifestError) as err:
        load_folder(tmp_path / "study", tmp_path / "out")
    assert len(err.value.problems) == 1 and "vol0.tif" in err.value.problems[0]


def test_every_problem_is_listed(tmp_path):
    manifest = make_study(tmp_path / "study", n=3)
    data = json.loads(manifest.read_text())
    data["volumes"][0].update(image="nope.tif", prompts="nope.json", colour="red")  # three problems at once
    data["volumes"][2]["out"] = data["volumes"][1]["out"]  # duplicate output
    manifest.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as err:
        load_manifest(manifest, tmp_path / "out")
    problems = err.value.problems
    assert [p.split(":")[0] for p in problems] == ["manifest.json entry 1 (nope.tif)"] * 3 + [
        "manifest.json entry 3 (vol2.tif)"]
    assert "unknown key(s) colour" in problems[0] and "image not found" in problems[1]
    assert "prompts file not found" in problems[2] and "is also entry 2's" in problems[3]
    with pytest.raises(ManifestError, match="must be a .json or .csv"):
        load_manifest(tmp_path / "study" / "vol0.tif", tmp_path)


def test_prompt_encoder_and_bad_options_are_one_line_errors(tmp_path, capsys):
    from napari_sam2med.cli import main

    manifest = make_study(tmp_path / "study", n=1)
    for extra, message in ((["--prompt-encoder", "enc.pt"], "unknown prompt encoder 'enc.pt': neither a file nor a shipped name"),
                           (["--workers", "0"], "--workers must be at least 1"),
                           (["--retries", "-1"], "--retries must be 0 or more")):
        rc = main(["batch", str(manifest), "--out", str(tmp_path / "out"), *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("sam2med batch: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_resume_needs_a_matching_sidecar(tmp_path):
    """A volume counts as done only when its output exists with a sidecar for the same inputs and model."""
    import dataclasses
    import os

    from napari_sam2med.batch.task import ModelSpec, is_finished, job_key, sidecar_path

    manifest = make_study(tmp_path / "study", n=1)
    out = tmp_path / "out"
    [job] = load_manifest(manifest, out)
    spec = ModelSpec("sam2.1-test", 64, "/x/test.pt", "ab" * 32)
    assert not is_finished(job, spec)
    out.mkdir()
    job.out.write_bytes(b"labels")
    assert not is_finished(job, spec)  # no sidecar: a run killed between the two writes
    sidecar_path(job.out).write_text(json.dumps({"key": job_key(job, spec), "seconds": 1.0}))
    assert is_finished(job, spec)
    assert not is_finished(job, dataclasses.replace(spec, checkpoint_sha256="cd" * 32))  # other weights
    assert not is_finished(job, dataclasses.replace(spec, direction="forward"))
    st = job.image.stat()
    os.utime(job.image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the image changed
    assert not is_finished(job, spec)
