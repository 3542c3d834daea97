import argparse
import csv

import numpy as np
import pytest

from napari_sam2med._cli_utils import run_command
from napari_sam2med.octa import command
from napari_sam2med.octa.synthetic import write_layer_sequence_folder

from .conftest import LAYER_SEQ, need


def parse(argv):
    parser = argparse.ArgumentParser(prog="sam2med")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["octa", *argv, "--no-progress"])


def run(args) -> int:
    """Through the CLI's one error boundary, as ``sam2med octa`` runs it."""
    return run_command("octa", command.run, args)


@pytest.fixture(scope="module")
def test_weights(tmp_path_factory):
    """A perturbed random sam2.1-test checkpoint at 128 px (fast, non-empty masks)."""
    import torch

    from napari_sam2med.sam2 import build_model, get_config
    from napari_sam2med.sam2.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(get_config("sam2.1-test", 128))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)  # "object present"
    return save_checkpoint(model, tmp_path_factory.mktemp("w") / "octa_test.pt")


@pytest.fixture
def one_thread(tiny_model):  # sets torch to one thread; the CLI loads its own model
    return tiny_model


def test_cli_layer_sequence_with_metrics(tmp_path, synthetic_case, one_thread, capsys):
    folder = write_layer_sequence_folder(tmp_path / "rv", synthetic_case, "rv")
    out, csv_path = tmp_path / "labels.tif", tmp_path / "m.csv"
    args = parse(["rv", str(folder), "--out", str(out), "--metrics-csv", str(csv_path), "--random-init",
                  "--image-size", "128", "--device", "cpu", "--n-pos", "2", "--n-neg", "1", "--ref-layer", "1"])
    assert run(args) == 0
    import tifffile

    labels = tifffile.imread(out)
    assert labels.shape == synthetic_case.images.shape
    assert set(np.unique(labels)) <= set(range(0, synthetic_case.n_vessels + 1))
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert [r["layer"] for r in rows] == ["100", "101", "102", "103", "overall"]
    # the overall counts are the sum of the per-layer counts
    assert int(rows[-1]["tp"]) == sum(int(r["tp"]) for r in rows[:-1])
    assert "overall: dice" in capsys.readouterr().err


def test_cli_plain_stack_with_gt_stack(tmp_path, synthetic_case, test_weights, capsys):
    """The CLI's labels equal the pipeline's on the same weights, and its metrics are the labels' scores."""
    import tifffile
    import zarr

    from napari_sam2med.engine import run_to_end
    from napari_sam2med.octa.pipeline import OctaConfig, run_layer_sequence
    from napari_sam2med.sam2 import load_model

    images, gt = synthetic_case.images, synthetic_case.faz.astype(np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", images, photometric="minisblack")
    tifffile.imwrite(tmp_path / "gt.tif", gt, photometric="minisblack")
    out, csv_path = tmp_path / "faz.zarr", tmp_path / "faz.csv"
    args = parse(["faz", str(tmp_path / "img.tif"), "--gt", str(tmp_path / "gt.tif"), "--out", str(out),
                  "--metrics-csv", str(csv_path), "--model", "sam2.1-test", "--checkpoint", str(test_weights),
                  "--image-size", "128", "--device", "cpu"])
    assert run(args) == 0 and out.exists()
    labels = zarr.open_array(str(out), mode="r")[:]

    model = load_model("sam2.1-test", image_size=128, checkpoint=test_weights, device="cpu")
    k = len(images) // 2  # the default reference layer
    expected = run_to_end(run_layer_sequence(model, images, gt[k], k, OctaConfig(task="faz")))[0][0]
    assert labels.any() and not labels.all()  # a real segmentation, not a trivial one
    np.testing.assert_array_equal(labels, expected)

    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert [r["layer"] for r in rows] == [str(i) for i in range(len(images))] + ["overall"]
    pred, ref = labels > 0, gt > 0
    for i, row in enumerate(rows[:-1]):  # Dice recomputed here, independently of octa.metrics
        dice = 2 * (pred[i] & ref[i]).sum() / max(pred[i].sum() + ref[i].sum(), 1)
        assert float(row["dice"]) == pytest.approx(dice, abs=1e-6)
    overall = 2 * (pred & ref).sum() / (pred.sum() + ref.sum())
    assert float(rows[-1]["dice"]) == pytest.approx(overall, abs=1e-6)
    assert f"overall: dice {overall:.4f}" in capsys.readouterr().err


@pytest.mark.parametrize("extra,msg", [
    (["--ref-layer", "9"], "outside"),
    (["--n-pos", "0"], "n-pos"),
])
def test_cli_bad_input_exit_2_no_output(tmp_path, synthetic_case, capsys, extra, msg):
    folder = write_layer_sequence_folder(tmp_path / "faz", synthetic_case, "faz")
    out = tmp_path / "o.tif"
    args = parse(["faz", str(folder), "--out", str(out), "--random-init", *extra])
    assert run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sam2med octa: error:") and msg in err[0]
    assert not out.exists()


def test_cli_bad_paths(tmp_path, capsys):
    assert run(parse(["rv", str(tmp_path / "nope"), "--out", str(tmp_path / "o.tif")])) == 2
    assert run(parse(["rv", str(tmp_path), "--out", str(tmp_path / "o.png")])) == 2
    (tmp_path / "s.npy").write_bytes(b"")
    assert run(parse(["rv", str(tmp_path / "s.npy"), "--out", str(tmp_path / "o.tif")])) == 2  # no --gt
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("sam2med octa: error:") for line in lines)
    assert list(tmp_path.iterdir()) == [tmp_path / "s.npy"]


def test_cli_uses_the_shared_model_arguments(tmp_path, capsys):
    args = parse(["rv", "x", "--out", "o.tif", "--offline", "--model", "medsam2-latest"])
    assert args.offline and args.model == "medsam2-latest"
    with pytest.raises(SystemExit) as exc:  # the registry's choices, as for every command
        parse(["rv", "x", "--out", "o.tif", "--model", "nope"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_cli_offline_missing_checkpoint_is_bad_input(tmp_path, synthetic_case, capsys, monkeypatch):
    monkeypatch.setenv("SAM2MED_CACHE", str(tmp_path / "cache"))
    folder = write_layer_sequence_folder(tmp_path / "faz", synthetic_case, "faz")
    out = tmp_path / "o.tif"
    assert run(parse(["faz", str(folder), "--out", str(out), "--offline", "--model", "sam2.1-tiny"])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sam2med octa: error:") and "offline" in err and "\n" not in err
    assert not out.exists()


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
    assert run(args) == 0
    import tifffile

    assert tifffile.imread(out).shape == (11, 512, 512)
    assert len(csv_path.read_text().strip().splitlines()) == 1 + 11 + 1
