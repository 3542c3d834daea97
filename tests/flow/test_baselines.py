"""Classical baselines: sign convention, streaming steps, the ROI fallback; metrics."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam2med.flow.estimators.classical import ILKEstimator, TVL1Estimator, classical_roi
from napari_sam2med.flow.metrics import MetricAccumulator, endpoint_error, flow_metrics
from napari_sam2med.flow.types import FlowEstimator, RoiPrompt, load_rois_json


def _texture(shape=(48, 48), seed=0):
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random(shape), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return img.astype(np.float32)


@pytest.mark.parametrize("cls", [TVL1Estimator, ILKEstimator])
def test_sign_convention_matches_shift(cls):
    # frame1(p + d) = frame0(p) for d = (2, -1): flow must be (+2, -1).
    f0 = _texture()
    f1 = ndi.shift(f0, (2.0, -1.0), order=3, mode="wrap").astype(np.float32)
    est = cls()
    assert isinstance(est, FlowEstimator)
    est.reset(f0, [RoiPrompt(1, np.array([[24.0, 24.0]]), np.array([1]))])
    step = est.step(f1)
    assert step.index == 0
    assert step.flow.shape == (48, 48, 2) and step.flow.dtype == np.float32
    assert step.roi_ids.shape == (48, 48) and step.roi_ids.dtype == np.int32
    centre = step.flow[12:36, 12:36].reshape(-1, 2).mean(0)
    np.testing.assert_allclose(centre, [2.0, -1.0], atol=0.15)
    step2 = est.step(ndi.shift(f1, (2.0, -1.0), order=3, mode="wrap"))
    assert step2.index == 1


def test_step_before_reset_and_shape_mismatch():
    est = ILKEstimator()
    with pytest.raises(ValueError, match="reset"):
        est.step(np.zeros((8, 8), np.float32))
    est.reset(np.zeros((8, 8), np.float32), [])
    with pytest.raises(ValueError, match="shape"):
        est.step(np.zeros((9, 8), np.float32))


def _two_vessels(dark=True):
    img = np.full((48, 48), 0.8 if dark else 0.2, np.float32)
    value = 0.2 if dark else 0.8
    img[10:14, :] = value  # horizontal vessel rows 10-13
    img[:, 30:34] = value  # vertical vessel cols 30-33 (crosses the first)
    img[30:34, 0:20] = value  # separate short vessel rows 30-33
    return ndi.gaussian_filter(img, 0.7)


@pytest.mark.parametrize("dark", [True, False])
def test_classical_roi_keeps_prompted_component(dark):
    img = _two_vessels(dark)
    roi = RoiPrompt(3, np.array([[32.0, 8.0]]), np.array([1]))
    ids = classical_roi(img, [roi])
    assert ids.dtype == np.int32
    assert ids[32, 8] == 3 and ids[31, 15] == 3
    # the other (connected) vessel network is not included
    assert ids[12, 5] == 0 and ids[40, 31] == 0
    assert ids[2, 2] == 0
    assert 40 <= np.count_nonzero(ids) <= 200


def test_classical_roi_negative_points_and_multiple_rois():
    img = _two_vessels(True)
    rois = [
        RoiPrompt(1, np.array([[12.0, 5.0], [40.0, 31.0]]), np.array([1, 0])),
        RoiPrompt(2, np.array([[32.0, 8.0], [2.0, 2.0]]), np.array([1, 0])),
    ]
    ids = classical_roi(img, rois)
    assert ids[12, 5] == 1 and ids[32, 8] == 2
    assert ids[40, 31] == 0  # negative point cut a hole in ROI 1
    assert ids[12, 20] == 1
    # a positive point on flat background falls back to a small disk
    flat = classical_roi(np.full((20, 20), 0.5, np.float32), [RoiPrompt(1, np.array([[10.0, 10.0]]), np.array([1]))])
    assert flat[10, 10] == 1 and 20 <= np.count_nonzero(flat) <= 40


def test_metrics_hand_computed():
    gt = np.zeros((2, 2, 2))
    pred = np.array([[[3.0, 4.0], [0.5, 0.0]], [[0.0, 2.0], [10.0, 0.0]]])  # EPE 5, .5, 2, 10
    np.testing.assert_allclose(endpoint_error(pred, gt), [[5, 0.5], [2, 10]])
    m = flow_metrics(pred, gt)
    assert m.epe == pytest.approx(4.375) and m.n_pixels == 4
    assert m.acc == {1.0: 0.25, 3.0: 0.5, 5.0: 0.5}  # EPE < 5 is strict
    mask = np.array([[True, True], [True, False]])
    m = flow_metrics(pred, gt, mask)
    assert m.epe == pytest.approx(2.5) and m.acc[3.0] == pytest.approx(2 / 3)
    acc = MetricAccumulator()
    acc.update(pred[:1], gt[:1])
    acc.update(pred[1:], gt[1:])
    assert acc.result().epe == pytest.approx(4.375)
    assert np.isnan(flow_metrics(pred, gt, np.zeros((2, 2), bool)).epe)
    with pytest.raises(ValueError):
        endpoint_error(pred, gt[..., :1])


def test_load_rois_json_validation(tmp_path):
    rois = load_rois_json({"rois": [{"id": 2, "points": [[1, 2], [3, 4]], "labels": [1, 0]}]})
    assert rois[0].id == 2 and rois[0].points.shape == (2, 2) and list(rois[0].labels) == [1, 0]
    bad = [
        {},
        {"rois": []},
        {"rois": [{"id": 0, "points": [[1, 2]]}]},
        {"rois": [{"id": 1, "points": [[1, 2, 3]]}]},
        {"rois": [{"id": 1, "points": [[1, 2]], "labels": [0]}]},
        {"rois": [{"id": 1, "points": [[1, 2]], "labels": [1, 1]}]},
        {"rois": [{"id": 1, "points": [[1, 2]]}, {"id": 1, "points": [[1, 2]]}]},
    ]
    for data in bad:
        with pytest.raises(ValueError):
            load_rois_json(data)
    p = tmp_path / "p.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_rois_json(p)
    with pytest.raises(FileNotFoundError):
        load_rois_json(tmp_path / "missing.json")


def test_classical_roi_temporal_contrast_drops_static_vessel():
    img = np.full((48, 48), 0.8, np.float32)
    img[10:14, :] = 0.2  # vessel A (flowing)
    img[34:38, :] = 0.2  # vessel B (static)
    img[10:38, 22:26] = 0.2  # static connector joins A and B
    rng = np.random.default_rng(0)
    f0 = ndi.gaussian_filter(img, 0.7)
    f1 = f0.copy()
    f1[10:14, :] += rng.uniform(-0.15, 0.15, (4, 48)).astype(np.float32)  # cells move in A only
    roi = [RoiPrompt(1, np.array([[12.0, 5.0]]), np.array([1]))]
    static = classical_roi(f0, roi)
    assert static[12, 5] == 1 and static[36, 5] == 1  # connected: B leaks in
    moving = classical_roi(f0, roi, next_frame=f1)
    assert moving[12, 5] == 1 and moving[12, 40] == 1
    assert moving[36, 5] == 0 and moving[36, 40] == 0
