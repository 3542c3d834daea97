import argparse
import csv

import numpy as np
import pytest

from napari_sam2med.octa import command
from napari_sam2med.octa.synthetic import write_layer_sequence_folder

from .conftest import LAYER_SEQ, need


def parse(argv):
    parser = argparse.ArgumentParser(prog="sam2med")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["octa", *argv])


@pytest.fixture
def one_thread(tiny_model):  # sets torch to one thread; the CLI loads its own model
    return tiny_model


def test_cli_layer_sequence_with_metrics(tmp_path, synthetic_case, one_thread, capsys):
    folder = write_layer_sequence_folder(tmp_path / "rv", synthetic_case, "rv")
    out, csv_path = tmp_path / "labels.tif", tmp_path / "m.csv"
    args = parse(["rv", str(folder), "--out", str(out), "--metrics-csv", str(csv_path), "--random-init",
                  "--image-size", "128", "--device", "cpu", "--n-pos", "2", "--n-neg", "1", "--ref-layer", "1"])
    assert command.run(args) == 0
    import tifffile

    labels = tifffile.imread(out)
    assert labels.shape == synthetic_case.images.shape
    assert set(np.unique(labels)) <= set(range(0, synthetic_case.n_vessels + 1))
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["layer"] for r in rows] == ["100", "101", "102", "103", "overall"]
    # the overall counts are the sum of the per-layer counts
    assert int(rows[-1]["tp"]) == sum(int(r["tp"]) for r in rows[:-1])
    assert "overall: dice" in capsys.readouterr().err


def test_cli_plain_stack_with_gt_stack(tmp_path, synthetic_case, one_thread):
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", synthetic_case.images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "gt.tif", synthetic_case.faz.astype(np.uint8), photometric="minisblack")
    out = tmp_path / "faz.zarr"
    args = parse(["faz", str(tmp_path / "img.tif"), "--gt", str(tmp_path / "gt.tif"), "--out", str(out),
                  "--random-init", "--image-size", "128", "--device", "cpu"])
    assert command.run(args) == 0 and out.exists()


@pytest.mark.parametrize("extra,msg", [
    (["--ref-layer", "9"], "outside"),
    (["--n-pos", "0"], "n-pos"),
])
def test_cli_bad_input_exit_2_no_output(tmp_path, synthetic_case, capsys, extra, msg):
    folder = write_layer_sequence_folder(tmp_path / "faz", synthetic_case, "faz")
    out = tmp_path / "o.tif"
    args = parse(["faz", str(folder), "--out", str(out), "--random-init", *extra])
    assert command.run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sam2med octa: error:") and msg in err[0]
    assert not out.exists()


def test_cli_bad_paths(tmp_path, capsys):
    assert command.run(parse(["rv", str(tmp_path / "nope"), "--out", str(tmp_path / "o.tif")])) == 2
    assert command.run(parse(["rv", str(tmp_path), "--out", str(tmp_path / "o.png")])) == 2
    (tmp_path / "s.npy").write_bytes(b"")
    assert command.run(parse(["rv", str(tmp_path / "s.npy"), "--out", str(tmp_path / "o.tif")])) == 2  # no --gt
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("sam2med octa: error:") for line in lines)
    assert list(tmp_path.iterdir()) == [tmp_path / "s.npy"]


@pytest.mark.shared_data
def test_cli_projection_job_real_data():
    root = need(LAYER_SEQ / "3M")
    job = command.prepare_job(parse(["faz", str(root), "--projection", "--out", "x.tif"]))
    assert job.projection and job.images.shape == (3, 304, 304)
    assert job.ground_truth.shape == (1, 304, 304) and job.ground_truth.any()


@pytest.mark.shared_data
def test_cli_rv_job_uses_vessel_objects():
    folder = need(LAYER_SEQ / "RV_LayerSequence" / "10301")
    job = command.prepare_job(parse(["rv", str(folder), "--ref-layer", "9", "--out", "x.tif"]))
    assert job.reference.max() == 10 and job.ground_truth.shape == (10, 512, 512)


@pytest.mark.slow
@pytest.mark.shared_data
def test_cli_real_faz_sequence_random_weights(tmp_path, one_thread):
    """Runs end to end on OCTA-500 10301; random weights, so only the structure is checked."""
    folder = need(LAYER_SEQ / "FAZ_LayerSequence" / "10301")
    out, csv_path = tmp_path / "faz.tif", tmp_path / "faz.csv"
    args = parse(["faz", str(folder), "--out", str(out), "--metrics-csv", str(csv_path), "--random-init",
                  "--image-size", "128", "--device", "cpu"])
    assert command.run(args) == 0
    import tifffile

    assert tifffile.imread(out).shape == (11, 512, 512)
    assert len(open(csv_path).read().strip().splitlines()) == 1 + 11 + 1
