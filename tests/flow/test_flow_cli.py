"""``sam2med flow`` through the CLI's error boundary (``run_command``): happy path and bad inputs."""

import argparse
import json

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage as ndi

from napari_sam2med.flow import command


def _parser():
    parser = argparse.ArgumentParser(prog="sam2med")
    sub = parser.add_subparsers(dest="command")
    command.add_parser(sub)
    return parser


def _video(n=5, shape=(48, 48)):
    rng = np.random.default_rng(3)
    base = ndi.gaussian_filter(rng.random(shape), 2.0)
    base = (base - base.min()) / (base.max() - base.min())
    return np.stack([ndi.shift(base, (0.0, 1.5 * t), order=3, mode="wrap") for t in range(n)])


POINTS = {"rois": [{"id": 1, "points": [[24, 24], [10, 10]], "labels": [1, 0]}, {"id": 2, "points": [[40, 40]]}]}


@pytest.fixture
def inputs(tmp_path):
    video = (_video() * 60000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "v.tif", video)
    np.save(tmp_path / "v.npy", (video / 257).astype(np.uint8))
    (tmp_path / "p.json").write_text(json.dumps(POINTS))
    return tmp_path


def _run(argv):
    from napari_sam2med._cli_utils import run_command

    args = _parser().parse_args(["flow", *argv, "--no-progress"])
    return run_command("flow", args.func, args)


@pytest.mark.parametrize("suffix, method", [("tif", "ilk"), ("npy", "tvl1")])
def test_cli_happy_path(inputs, capsys, suffix, method):
    out = inputs / "FLOW.zarr"
    code = _run([str(inputs / f"v.{suffix}"), "--points", str(inputs / "p.json"), "--out", str(out),
                 "--method", method, "--pixel-size", "0.5", "--fps", "20"])
    assert code == 0
    g = zarr.open_group(str(out), mode="r")
    assert g["flow"].shape == (4, 48, 48, 2) and g["flow"].dtype == np.float32
    assert g["speed_um_s"].shape == (4, 48, 48) and g["roi_ids"].dtype == np.int32
    assert g["mean_speed_um_s"].shape == (4, 2) and g.attrs["method"] == method
    # texture moves 1.5 px/frame along columns -> ~15 µm/s at 0.5 µm/px, 20 fps
    inner = np.asarray(g["speed_um_s"][:, 14:34, 14:34]).mean()
    assert inner == pytest.approx(15.0, rel=0.15)
    outp = capsys.readouterr().out
    assert "ROI 1" in outp and "µm/s" in outp
    assert sorted(p.name for p in inputs.iterdir()) == ["FLOW.zarr", "p.json", "v.npy", "v.tif"]


def test_cli_zarr_input_default_method(inputs):
    src = zarr.open_array(str(inputs / "v.zarr"), mode="w", shape=(5, 48, 48), chunks=(1, 48, 48), dtype="f4")
    src[...] = _video().astype(np.float32)
    assert _run([str(inputs / "v.zarr"), "--points", str(inputs / "p.json"), "--out", str(inputs / "o.zarr")]) == 0
    g = zarr.open_group(str(inputs / "o.zarr"), mode="r")
    expected = "sam2flow" if command.has_default_weights() else "tvl1"
    assert g.attrs["method"] == expected and "speed_um_s" not in g


def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", ["missing_video", "video_2d", "bad_json", "out_of_range", "bad_suffix",
                                  "missing_points", "half_calibration", "sam2flow_missing_weights",
                                  "sam2flow_bad_weights", "one_frame"])
def test_cli_bad_inputs(inputs, capsys, case):
    video, points = str(inputs / "v.tif"), str(inputs / "p.json")
    extra = []
    if case == "missing_video":
        video = str(inputs / "nope.tif")
    elif case == "video_2d":
        np.save(inputs / "flat.npy", np.zeros((48, 48), np.uint8))
        video = str(inputs / "flat.npy")
    elif case == "one_frame":
        np.save(inputs / "one.npy", np.zeros((1, 48, 48), np.uint8))
        video = str(inputs / "one.npy")
    elif case == "bad_json":
        points = _write(inputs / "bad.json", "{rois: [")
    elif case == "out_of_range":
        points = _write(inputs / "far.json", json.dumps({"rois": [{"id": 1, "points": [[100, 5]]}]}))
    elif case == "bad_suffix":
        video = _write(inputs / "v.txt", "hello")
    elif case == "missing_points":
        points = str(inputs / "none.json")
    elif case == "half_calibration":
        extra = ["--fps", "10"]
    elif case == "sam2flow_missing_weights":
        extra = ["--method", "sam2flow", "--weights", str(inputs / "none.pt")]
    elif case == "sam2flow_bad_weights":
        extra = ["--method", "sam2flow", "--weights", _write(inputs / "bad.pt", "not a checkpoint")]
    out = inputs / "FLOW.zarr"
    assert _run([video, "--points", points, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sam2med flow: error:") and "\n" not in err
    assert not out.exists()
    assert not [p for p in inputs.iterdir() if p.name.startswith(".FLOW.zarr")]


def test_cli_refuses_existing_output(inputs, capsys):
    (inputs / "FLOW.zarr").mkdir()
    assert _run([str(inputs / "v.tif"), "--points", str(inputs / "p.json"), "--out", str(inputs / "FLOW.zarr")]) == 2
    assert "exists" in capsys.readouterr().err


def test_cli_sam2flow_tiny_random_weights(inputs, capsys):
    torch = pytest.importorskip("torch")
    estimator = pytest.importorskip("napari_sam2med.flow.estimators.sam2flow")
    from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig

    torch.manual_seed(0)
    cfg = SAM2FlowConfig(match_dim=16, context_dim=16, hidden_dim=16, memory_dim=16, roi_dim=16,
                         iters=1, hiera_embed_dim=8, hiera_stages=(1, 1, 1, 1), corr_levels=2, corr_radius=1)
    torch.save({"config": cfg.to_dict(), "model": SAM2Flow(cfg).state_dict()}, inputs / "tiny.pt")
    assert estimator.SAM2FlowEstimator.name == "sam2flow"
    out = inputs / "FLOW.zarr"
    code = _run([str(inputs / "v.npy"), "--points", str(inputs / "p.json"), "--out", str(out),
                 "--weights", str(inputs / "tiny.pt"), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["method"] == "sam2flow"
    flow = np.asarray(g["flow"])
    assert flow.shape == (4, 48, 48, 2) and np.all(np.isfinite(flow))
    assert g["mean_speed_px"].shape == (4, 2)
