"""Streaming runner: shapes, streaming == batch, zarr output, µm/s, atomic writes, layers."""

from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from napari_sam2med.engine.progress import run_to_end
from napari_sam2med.flow.estimators.classical import ILKEstimator
from napari_sam2med.flow.layers import flow_layer_data
from napari_sam2med.flow.runner import (
    FlowProgress,
    FrameNormalizer,
    estimate_flow,
    flow_output,
    open_flow_output,
)
from napari_sam2med.flow.types import FlowStep, RoiPrompt


def _moving_video(n=6, shape=(48, 48), d=(1.0, 2.0), seed=0):
    rng = np.random.default_rng(seed)
    base = ndi.gaussian_filter(rng.random(shape), 2.0)
    base = (base - base.min()) / (base.max() - base.min())
    frames = [ndi.shift(base, (d[0] * t, d[1] * t), order=3, mode="wrap") for t in range(n)]
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


ROIS = [
    RoiPrompt(1, np.array([[20.0, 20.0]]), np.array([1])),
    RoiPrompt(4, np.array([[40.0, 8.0], [5.0, 5.0]]), np.array([1, 0])),
]


@dataclass
class ConstantFlow:
    """Test estimator: a known constant flow inside a fixed box ROI per id."""

    velocity: tuple = (3.0, 4.0)
    name: str = "constant"
    frames_seen: list = field(default_factory=list)

    def reset(self, first_frame, rois):
        self.frames_seen = [first_frame]
        self.ids = np.zeros(first_frame.shape, np.int32)
        for k, roi in enumerate(rois):
            self.ids[k * 10 : k * 10 + 5, :5] = roi.id
        self.t = 0

    def step(self, next_frame):
        self.frames_seen.append(next_frame)
        flow = np.zeros(next_frame.shape + (2,), np.float32)
        flow[...] = np.array(self.velocity, np.float32) * (self.t + 1)
        self.t += 1
        return FlowStep(self.t - 1, flow, self.ids)


def test_constant_flow_speeds_and_um_per_s():
    video = np.random.default_rng(1).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    est = ConstantFlow()
    out = {}
    steps = []
    result = run_to_end(on_step=steps.append, gen=estimate_flow(video, ROIS, est, out=out, pixel_size=0.5, fps=10.0))
    assert [s.done for s in steps] == [1, 2, 3, 4] and all(s.total == 4 for s in steps)
    assert isinstance(steps[0], FlowProgress) and steps[0].step.index == 0
    # uint8 frames are normalised by /255 one at a time
    np.testing.assert_allclose(est.frames_seen[2], video[2] / 255.0, atol=1e-6)
    assert est.frames_seen[2].dtype == np.float32
    expected_px = np.array([[5.0, 5.0], [10.0, 10.0], [15.0, 15.0], [20.0, 20.0]])
    np.testing.assert_allclose(result.mean_speed_px, expected_px)
    np.testing.assert_allclose(result.mean_speed_um_s, expected_px * 0.5 * 10.0)
    assert result.roi_ids == [1, 4] and result.method == "constant"
    assert out["flow"].shape == (4, 48, 48, 2) and out["flow"].dtype == np.float32
    assert out["speed_um_s"].shape == (4, 48, 48) and out["speed_um_s"].dtype == np.float32
    np.testing.assert_allclose(out["speed_um_s"][1], 10.0 * 5.0)
    assert out["roi_ids"].dtype == np.int32 and out["roi"].dtype == bool
    assert out["roi"].sum() == 50 and set(np.unique(out["roi_ids"])) == {0, 1, 4}
    np.testing.assert_allclose(out["mean_speed_um_s"], expected_px * 5.0)
    assert out["attrs"]["method"] == "constant" and out["attrs"]["fps"] == 10.0


def test_uncalibrated_has_no_um_output():
    out = {}
    result = run_to_end(estimate_flow(np.zeros((3, 48, 48), np.float32), ROIS[:1], ConstantFlow(), out=out))
    assert result.mean_speed_um_s is None and "speed_um_s" not in out


def test_streaming_zarr_equals_numpy_batch(tmp_path):
    video = (_moving_video() * 4000 + 100).astype(np.uint16)
    z = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=video.shape, chunks=(1, 48, 48), dtype=video.dtype)
    z[...] = video
    batch = run_to_end(estimate_flow(video, ROIS, ILKEstimator(), out=(mem := {})))
    with flow_output(tmp_path / "FLOW.zarr") as group:
        streamed = run_to_end(estimate_flow(z, ROIS, ILKEstimator(), out=group, pixel_size=2.0, fps=5.0))
    np.testing.assert_array_equal(batch.mean_speed_px, streamed.mean_speed_px)
    g = open_flow_output(tmp_path / "FLOW.zarr")
    assert g["flow"].shape == (5, 48, 48, 2) and g["flow"].dtype == np.float32
    assert g["flow"].chunks == (1, 48, 48, 2)
    assert g["speed_um_s"].shape == (5, 48, 48) and g["speed_um_s"].chunks == (1, 48, 48)
    assert g["roi_ids"].dtype == np.int32 and g["roi"].dtype == bool
    np.testing.assert_array_equal(g["flow"][...], mem["flow"])
    speed = np.hypot(mem["flow"][..., 0], mem["flow"][..., 1])
    np.testing.assert_allclose(g["speed_um_s"][...], speed * 10.0, rtol=1e-5)
    assert g.attrs["method"] == "ilk" and g.attrs["roi_ids"] == [1, 4]
    # the texture moves by (1, 2) px/frame: ILK recovers it in the interior
    inner = mem["flow"][:, 12:36, 12:36].reshape(-1, 2).mean(0)
    np.testing.assert_allclose(inner, [1.0, 2.0], atol=0.2)
    # dask input streams too
    lazy = run_to_end(estimate_flow(da.from_array(video, chunks=(1, 48, 48)), ROIS, ILKEstimator()))
    np.testing.assert_array_equal(lazy.mean_speed_px, batch.mean_speed_px)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_flow_output_is_atomic(tmp_path):
    target = tmp_path / "FLOW.zarr"
    with pytest.raises(RuntimeError):
        with flow_output(target) as group:
            group.create_array("flow", shape=(2,), dtype="f4")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with flow_output(target) as group:
        group.create_array("flow", shape=(2,), dtype="f4")
    with pytest.raises(ValueError, match="exists"):
        with flow_output(target):
            pass
    with pytest.raises(FileNotFoundError):
        open_flow_output(tmp_path / "nope.zarr")


@pytest.mark.parametrize(
    "video, rois, kwargs, match",
    [
        (np.zeros((4, 8)), ROIS, {}, "T, H, W"),
        (np.zeros((1, 8, 8)), ROIS, {}, "2 frames"),
        (np.zeros((3, 16, 16)), [RoiPrompt(1, np.array([[20.0, 1.0]]), np.array([1]))], {}, "outside"),
        (np.zeros((3, 48, 48)), [], {}, "ROI"),
        (np.zeros((3, 48, 48)), ROIS, {"pixel_size": 1.0}, "both"),
        (np.zeros((3, 48, 48)), ROIS, {"pixel_size": -1.0, "fps": 2.0}, "pixel_size"),
    ],
)
def test_bad_inputs(video, rois, kwargs, match):
    with pytest.raises(ValueError, match=match):
        next(estimate_flow(video, rois, ILKEstimator(), **kwargs))


def test_normalizer_windows():
    assert FrameNormalizer.from_video(np.zeros((3, 4, 4), np.uint8)).high == 255.0
    f = FrameNormalizer.from_video(np.linspace(0, 1, 48, dtype=np.float32).reshape(3, 4, 4))
    assert (f.low, f.high) == (0.0, 1.0)
    v = np.arange(3 * 100, dtype=np.uint16).reshape(3, 10, 10) * 10
    f = FrameNormalizer.from_video(v)
    assert 0 < f.low < 100 and 2900 < f.high < 2990
    out = f(v[2])
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() == 1.0


def test_flow_layer_data_shapes():
    flow = np.zeros((3, 20, 20, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, 4.0
    roi = np.zeros((20, 20), np.int32)
    roi[:10, :10] = 1
    (vec, vmeta, vtype), (img, imeta, itype) = flow_layer_data(flow, roi, grid_step=4, scale=(1, 2, 2))
    assert (vtype, itype) == ("vectors", "image")
    # grid points 2, 6 (x2 axes) inside the 10x10 ROI -> 4 per frame
    assert vec.shape == (12, 2, 3) and img.shape == (3, 20, 20) and img.dtype == np.float32
    np.testing.assert_array_equal(vec[4, 0], [1, 2, 2])
    np.testing.assert_array_equal(vec[4, 1], [0, 3, 4])
    np.testing.assert_allclose(vmeta["features"]["speed"], 5.0)
    np.testing.assert_allclose(img, 5.0)
    assert vmeta["scale"] == (1.0, 2.0, 2.0) and "px/frame" in imeta["name"]
    _, (img2, imeta2, _) = flow_layer_data(flow, roi, pixel_size=0.5, fps=4.0)
    np.testing.assert_allclose(img2, 10.0)
    assert "µm/s" in imeta2["name"]
