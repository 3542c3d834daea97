"""SAM2Flow over long videos: bounded error growth, streaming == batch, constant memory, bounded feedback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2med.flow.estimators.sam2flow import SAM2FlowEstimator, default_weights_path, load_flow_model
from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig
from napari_sam2med.flow.synthetic import SyntheticConfig, long_config, make_video, prompts_for

TINY = SAM2FlowConfig(match_dim=32, context_dim=32, hidden_dim=32, memory_dim=32, roi_dim=32, hiera_embed_dim=8,
                      iters=2)
#: The issue's bound: EPE at the end of a long video at most 1.2x EPE at its start.
GROWTH_BOUND = 1.2
#: Realistic long videos (``long_config``, as the long held-out set) from a seed range of their own
#: (CI), disjoint from training, selection and the reported sets.
CI_SEEDS = (32_000_000, 32_000_001)


def window_epe_growth(model: SAM2Flow, n_frames: int = 121, size: int = 64, window: int = 40):
    """In-vessel EPE of the first and the last ``window`` pairs, pooled over :data:`CI_SEEDS`,
    and the zero-flow EPE of the last window (what reporting no motion would score)."""
    first, last, zero = [], [], []
    for seed in CI_SEEDS:
        video = make_video(long_config(seed, n_frames=n_frames, size=size))
        mask = video.vessel_ids > 0
        est = SAM2FlowEstimator(model)
        est.reset(video.frames[0], prompts_for(video))
        errs = [np.linalg.norm(est.step(video.frames[t + 1]).flow - video.flow[t], axis=-1)[mask].mean()
                for t in range(n_frames - 1)]
        first.extend(errs[:window])
        last.extend(errs[-window:])
        zero.extend(np.linalg.norm(video.flow[t], axis=-1)[mask].mean() for t in range(n_frames - 1 - window, n_frames - 1))
    return float(np.mean(first)), float(np.mean(last)), float(np.mean(zero))


def test_shipped_weights_do_not_drift_over_120_frames():
    if not default_weights_path().is_file():
        pytest.skip("no shipped SAM2Flow weights")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    first, last, zero = window_epe_growth(load_flow_model())
    # The v1 weights fail this (warm-start feedback, benchmarks/RESULTS.md).
    assert last <= GROWTH_BOUND * first, (first, last)
    assert last < 0.9 * zero, (last, zero)  # stable *and* still measuring


def test_streaming_equals_batch_forward():
    torch.manual_seed(0)
    model = SAM2Flow(TINY).eval()
    video = make_video(SyntheticConfig(height=32, width=64, n_frames=7, seed=2))
    rois = prompts_for(video)
    est = SAM2FlowEstimator(model)
    est.reset(video.frames[0], rois)
    streamed = [est.step(f).flow for f in video.frames[1:]]
    from napari_sam2med.flow.estimators.sam2flow import prompts_to_tensors

    points, labels = prompts_to_tensors(rois)
    with torch.no_grad():
        outs = model(torch.from_numpy(video.frames)[None, :, None], points, labels)
    for s, out in zip(streamed, outs):
        np.testing.assert_allclose(s, out.flows[-1][0].permute(1, 2, 0).numpy(), atol=1e-4)


def _state_numel(est: SAM2FlowEstimator) -> int:
    bank = est.bank
    tensors = bank.motion + bank.context + [bank.last_flow, bank.roi_prob, est._prev.match, est._prev.context]
    return sum(t.numel() for t in tensors if t is not None)


def test_memory_is_constant_over_length():
    torch.manual_seed(0)
    est = SAM2FlowEstimator(SAM2Flow(TINY).eval(), iters=1)
    rng = np.random.default_rng(0)
    video = rng.random((60, 32, 32), dtype=np.float32)
    est.reset(video[0], prompts_for(make_video(SyntheticConfig(height=32, width=32, n_frames=2, seed=1))))
    sizes = []
    for t in range(1, 60):
        est.step(video[t])
        sizes.append(_state_numel(est))
    assert sizes[10] == sizes[-1] and len(est.bank) == TINY.memory_slots


def test_gated_warm_start_is_bounded_by_the_correlation_reach():
    torch.manual_seed(0)
    model = SAM2Flow(TINY).eval()
    bank = model.new_memory()
    bank.last_flow = torch.full((1, 2, 8, 8), 1e6)  # an absurd previous flow
    mixed = torch.zeros(1, TINY.context_dim + TINY.memory_dim, 8, 8)
    init = model._warm_start(bank, mixed, torch.zeros(1, 2, 8, 8))
    assert torch.isfinite(init).all() and init.abs().max() <= TINY.reach
    with torch.no_grad():  # a closed gate ignores the previous flow entirely
        model.warm_gate.bias.fill_(-30.0)
    assert model._warm_start(bank, mixed, torch.zeros(1, 2, 8, 8)).abs().max() < 1e-6


def test_v1_checkpoints_load_as_legacy_feedback():
    cfg = SAM2FlowConfig.from_dict(SAM2FlowConfig().to_dict() | {"feedback": "gated"})
    assert cfg.feedback == "gated"
    legacy = {k: v for k, v in SAM2FlowConfig().to_dict().items() if k != "feedback"}
    assert SAM2FlowConfig.from_dict(legacy).feedback == "legacy"
    assert SAM2Flow(SAM2FlowConfig.from_dict(legacy)).warm_gate is None
    assert SAM2FlowEstimator(SAM2Flow(TINY)).max_displacement == TINY.reach * SAM2Flow.scale
