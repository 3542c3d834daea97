"""Tests of the SAM2Flow model, its streaming estimator and the training step."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_sam2med.flow.estimators.sam2flow import SAM2FlowEstimator, default_weights_path, load_flow_model
from napari_sam2med.flow.net.correlation import AllPairsCorrelation, LocalCorrelation
from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig, pad_to_stride
from napari_sam2med.flow.net.update import convex_upsample
from napari_sam2med.flow.synthetic import SyntheticConfig, make_video, prompts_for
from napari_sam2med.flow.types import FlowEstimator, RoiPrompt

# A narrow configuration keeps the tests fast on a shared CPU; the full one is only
# built where its size matters.
TINY = SAM2FlowConfig(
    match_dim=32, context_dim=32, hidden_dim=32, memory_dim=32, roi_dim=32, hiera_embed_dim=8, iters=2
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SAM2Flow(TINY).eval()


@pytest.fixture(scope="module")
def video():
    return make_video(SyntheticConfig(height=70, width=90, n_frames=6, seed=11))


def test_parameter_count_and_size():
    n = sum(p.numel() for p in SAM2Flow(SAM2FlowConfig()).parameters())
    assert 1_000_000 < n < 7_500_000  # < 30 MB even in float32
    assert n * 4 < 30 * 2**20


def test_clip_forward_shapes_no_nan(model):
    frames = torch.rand(2, 3, 1, 64, 96)
    points = torch.tensor([[[[10.0, 20.0], [30.0, 40.0], [0.0, 0.0]]]]).expand(2, 1, 3, 2)
    labels = torch.tensor([[[1, 0, -1]]]).expand(2, 1, 3)
    with torch.no_grad():
        outs = model(frames, points, labels, iters=2)
    assert len(outs) == 2
    for out in outs:
        assert len(out.flows) == 2
        assert out.flows[-1].shape == (2, 2, 64, 96)
        assert out.roi_logits.shape == (2, 1, 64, 96)
        assert torch.isfinite(out.flows[-1]).all() and torch.isfinite(out.roi_logits).all()
    with pytest.raises(ValueError, match="multiples of 32"):
        model.encode(torch.rand(1, 1, 70, 90))


def test_correlation_all_pairs_equals_local():
    torch.manual_seed(1)
    f1, f2 = torch.randn(1, 8, 16, 24), torch.randn(1, 8, 16, 24)
    coords = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(24.0), indexing="ij"))[None]
    coords = coords + 3.0 * torch.randn(1, 2, 16, 24)
    a = AllPairsCorrelation(f1, f2, levels=3, radius=2)(coords)
    b = LocalCorrelation(f1, f2, levels=3, radius=2)(coords)
    assert a.shape == (1, 3 * 25, 16, 24)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_convex_upsample_of_constant_flow_is_scaled_constant():
    flow = torch.ones(1, 2, 5, 6) * torch.tensor([1.5, -2.0]).view(1, 2, 1, 1)
    up = convex_upsample(flow, torch.randn(1, 16 * 9, 5, 6), 4)
    assert up.shape == (1, 2, 20, 24)
    # Interior pixels only (zero padding enters at the border).
    interior = up[..., 4:-4, 4:-4]
    torch.testing.assert_close(interior, (4 * flow[..., :1, :1]).expand_as(interior))


def test_pad_to_stride_replicates_and_reports_size():
    x = torch.arange(70 * 90, dtype=torch.float32).view(1, 1, 70, 90)
    padded, size = pad_to_stride(x, 32)
    assert padded.shape == (1, 1, 96, 96) and size == (70, 90)
    assert torch.equal(padded[..., 70:, :90], x[..., 69:70, :].expand(1, 1, 26, 90))


def _stream(est, video, rois, n):
    est.reset(video.frames[0], rois)
    return [est.step(video.frames[t]) for t in range(1, n)]


def test_estimator_streams_odd_sizes_deterministically(model, video):
    est = SAM2FlowEstimator(model, iters=1)
    assert isinstance(est, FlowEstimator)
    rois = prompts_for(video)
    first = _stream(est, video, rois, 6)
    second = _stream(est, video, rois, 6)
    assert [s.index for s in first] == list(range(5))
    for a, b in zip(first, second):
        assert a.flow.shape == (70, 90, 2) and a.flow.dtype == np.float32
        assert a.roi_ids.shape == (70, 90) and a.roi_ids.dtype == np.int32
        assert np.isfinite(a.flow).all()
        np.testing.assert_array_equal(a.flow, b.flow)
        np.testing.assert_array_equal(a.roi_ids, b.roi_ids)
        assert set(np.unique(a.roi_ids)) <= {0} | {r.id for r in rois}


def test_memory_bank_stays_bounded(model):
    est = SAM2FlowEstimator(model, iters=1)
    rng = np.random.default_rng(0)
    est.reset(rng.random((32, 32), dtype=np.float32), [RoiPrompt(3, np.array([[5.0, 5.0]]), np.array([1]))])
    for _ in range(20):
        est.step(rng.random((32, 32), dtype=np.float32))
        assert len(est.bank) <= model.cfg.memory_slots
    assert len(est.bank) == model.cfg.memory_slots
    assert len(est.bank.context) == model.cfg.memory_slots


def test_estimator_rejects_bad_input(model):
    est = SAM2FlowEstimator(model, iters=1)
    with pytest.raises(ValueError, match="reset"):
        est.step(np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        est.reset(np.zeros((2, 32, 32), np.float32), [])
    est.reset(np.zeros((32, 32), np.float32), [])
    with pytest.raises(ValueError, match="differs"):
        est.step(np.zeros((32, 40), np.float32))
    step = est.step(np.zeros((32, 32), np.float32))
    assert not step.roi_ids.any()


def test_save_and_load_roundtrip(model, tmp_path):
    from napari_sam2med.train.flow_training import save_weights

    path = tmp_path / "w.pt"
    save_weights(model, path)
    assert path.stat().st_size < 30 * 2**20
    loaded = load_flow_model(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a.half().float(), b, msg=k)
    with pytest.raises(FileNotFoundError):
        load_flow_model(tmp_path / "missing.pt")


def test_shipped_weights_load_strictly():
    path = default_weights_path()
    if not path.is_file():
        pytest.skip("models/sam2flow_v1.pt not trained yet")
    assert path.stat().st_size < 30 * 2**20
    model = load_flow_model()  # strict=True inside
    v = make_video(SyntheticConfig(height=32, width=32, n_frames=2, seed=3))
    est = SAM2FlowEstimator(model, iters=2)
    est.reset(v.frames[0], prompts_for(v))
    assert np.isfinite(est.step(v.frames[1]).flow).all()


def test_training_steps_on_one_batch_reduce_the_loss():
    from napari_sam2med.train.flow_training import ClipSampler, TrainConfig, compute_loss

    torch.manual_seed(0)
    cfg = TrainConfig(batch=2, crop=32, clip=3, iters=2, pool=2, refresh=0, video_size=48, video_frames=4)
    sampler = ClipSampler(cfg)
    frames, flow, masks, vessel, pts, labs = sampler.batch()
    assert frames.shape == (2, 3, 1, 32, 32) and flow.shape == (2, 2, 2, 32, 32)
    net = SAM2Flow(TINY).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss, stats = compute_loss(net(frames, pts, labs, iters=cfg.iters), flow, masks, vessel)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert np.isfinite(stats["epe_vessel"])
    # Over-fitting one batch must work: the loss falls clearly, not just "does not explode".
    assert min(losses[-2:]) < 0.8 * losses[0], losses


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = SAM2Flow(TINY).train()
    frames = torch.rand(1, TINY.memory_slots + 2, 1, 32, 32)  # enough pairs to fill every memory age slot
    points = torch.tensor([[[[10.0, 12.0], [20.0, 5.0]]]])
    labels = torch.tensor([[[1, 0]]])
    outs = net(frames, points, labels, iters=2)
    loss = sum(o.flows[-1].abs().mean() + o.roi_logits.mean() for o in outs)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


def test_training_curriculum_seeds_and_vessel_weight():
    from napari_sam2med.train import flow_training as ft

    cfg = ft.TrainConfig(pool=3, refresh=0, video_size=48, video_frames=4, curriculum=0.5, start_speed=1.5)
    sampler = ft.ClipSampler(cfg)
    # At progress 0 the speed cap is start_speed; after the ramp it is back to 12 px/frame.
    assert max(float(v.speeds.max()) for v in sampler.pool) <= 1.5 + 1e-6
    sampler.progress = 1.0
    assert sampler._new_video().flow.shape == (3, 48, 48, 2)
    sampler.next_seed = ft.VALIDATION_SEED0 - 1
    sampler._new_video()
    assert sampler.next_seed == ft.VALIDATION_SEED0 + 1000  # held-out seeds skipped
    # Flow loss inside non-ROI vessels grows with vessel_weight.
    gt = torch.zeros(1, 1, 2, 8, 8)
    out = SimpleNamespace(flows=[torch.ones(1, 2, 8, 8)], roi_logits=torch.zeros(1, 1, 8, 8))
    vessel = torch.zeros(1, 8, 8)
    vessel[:, :2] = 1
    roi = torch.zeros(1, 1, 8, 8)
    roi[:, :, -2:] = 1
    gt[:, :, :, :2] = 1.0  # exact inside the vessel: more vessel weight -> lower normalised loss
    low = ft.compute_loss([out], gt, roi, vessel, vessel_weight=0.0, roi_weight=1.0)[1]["flow"]
    high = ft.compute_loss([out], gt, roi, vessel, vessel_weight=10.0, roi_weight=1.0)[1]["flow"]
    assert high < low


def test_shipped_weights_hash_is_pinned_and_checked(tmp_path, monkeypatch):
    from napari_sam2med.flow.estimators import sam2flow

    path = default_weights_path()
    if not path.is_file():
        pytest.skip("no shipped SAM2Flow weights")
    assert sam2flow.file_sha256(path) == sam2flow.WEIGHTS_SHA256
    fake = tmp_path / "sam2flow_v1.pt"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # one byte changed
    fake.write_bytes(bytes(blob))
    monkeypatch.setattr(sam2flow, "default_weights_path", lambda: fake)
    with pytest.raises(ValueError, match="SHA-256"):
        sam2flow.load_flow_model()
