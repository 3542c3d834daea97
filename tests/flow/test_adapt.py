"""Self-supervised adaptation (``flow.adapt``) and the ``sam2med flow-adapt`` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from napari_sam2med.engine.progress import run_to_end
from napari_sam2med.flow.adapt import AdaptConfig, adapt_flow, census_loss, smoothness_loss, warp
from napari_sam2med.flow.estimators.sam2flow import save_flow_weights
from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig
from napari_sam2med.flow.synthetic import SyntheticConfig, make_video, prompts_for
from napari_sam2med.flow.types import rois_to_json

TINY = SAM2FlowConfig(match_dim=32, context_dim=32, hidden_dim=32, memory_dim=32, roi_dim=32, hiera_embed_dim=8,
                      iters=2)


def test_warp_follows_the_flow_convention():
    # frame1(p + d) == frame0(p) for a shift by d = (1, 2): warping frame1 by d gives frame0.
    rng = np.random.default_rng(0)
    f0 = torch.from_numpy(rng.random((1, 1, 20, 24), dtype=np.float32))
    f1 = torch.roll(f0, shifts=(1, 2), dims=(2, 3))
    flow = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).expand(1, 2, 20, 24)
    warped, inside = warp(f1, flow)
    torch.testing.assert_close(warped[..., 2:-2, 3:-3], f0[..., 2:-2, 3:-3])
    assert inside[..., -1, :].sum() == 0 and inside[..., 0, 0] == 1


def test_census_and_smoothness_prefer_the_right_flow():
    rng = np.random.default_rng(1)
    f0 = torch.from_numpy(rng.random((1, 1, 32, 32), dtype=np.float32))
    f1 = torch.roll(f0, shifts=(0, 3), dims=(2, 3))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:-4, 4:-8] = 1
    right = torch.tensor([0.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 32, 32)
    wrong = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 32, 32)
    assert census_loss(f0, warp(f1, right)[0], mask) < 0.5 * census_loss(f0, warp(f1, wrong)[0], mask)
    noisy = right + torch.randn(1, 2, 32, 32)
    assert smoothness_loss(right, f0, mask) < 1e-6 < smoothness_loss(noisy, f0, mask)


def test_adapt_generator_reports_progress_and_changes_only_the_flow_path():
    torch.manual_seed(0)
    video = make_video(SyntheticConfig(height=40, width=48, n_frames=5, seed=3))
    model = SAM2Flow(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    result = run_to_end(adapt_flow(video.frames, prompts_for(video), model, AdaptConfig(steps=3, crop=32, iters=1,
                                                                                        lr=1e-3)), steps.append)
    assert [s.step for s in steps] == [1, 2, 3] and all(s.total == 3 for s in steps)
    assert len(result.losses) == 3 and np.isfinite(result.losses).all()
    after = result.model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert any(k.startswith("update.") for k in changed)
    assert not any(k.startswith(("roi_decoder.", "prompt_encoder.")) for k in changed)
    assert not result.model.training


def test_adapt_can_be_cancelled_between_steps():
    video = make_video(SyntheticConfig(height=32, width=32, n_frames=4, seed=4))
    model = SAM2Flow(TINY)
    gen = adapt_flow(video.frames, prompts_for(video), model, AdaptConfig(steps=50, crop=32, iters=1))
    first = next(gen)
    gen.close()  # what the job runner's Cancel does: stop between steps
    assert first.step == 1 and not model.training
    assert all(p.requires_grad for p in model.parameters())


def test_flow_adapt_cli_writes_weights_usable_by_flow(tmp_path):
    torch.manual_seed(0)
    video = make_video(SyntheticConfig(height=32, width=32, n_frames=4, seed=5))
    np.save(tmp_path / "v.npy", video.frames)
    import json

    (tmp_path / "p.json").write_text(json.dumps(rois_to_json(prompts_for(video))))
    save_flow_weights(SAM2Flow(TINY), tmp_path / "start.pt")
    cmd = [sys.executable, "-m", "napari_sam2med.cli", "flow-adapt", str(tmp_path / "v.npy"), "--points",
           str(tmp_path / "p.json"), "--out", str(tmp_path / "adapted.pt"), "--steps", "2", "--weights",
           str(tmp_path / "start.pt"), "--no-progress", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "adapted.pt").is_file() and "wrote" in done.stdout
    flow = subprocess.run([sys.executable, "-m", "napari_sam2med.cli", "flow", str(tmp_path / "v.npy"), "--points",
                           str(tmp_path / "p.json"), "--out", str(tmp_path / "F.zarr"), "--weights",
                           str(tmp_path / "adapted.pt"), "--no-progress", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert flow.returncode == 0, flow.stderr
    # Bad input: one line, exit 2, no file.
    bad = subprocess.run(cmd[:-7] + ["--out", str(tmp_path / "x.pt"), "--steps", "0"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "steps" in bad.stderr and not (tmp_path / "x.pt").exists()
    assert len(bad.stderr.strip().splitlines()) == 1
