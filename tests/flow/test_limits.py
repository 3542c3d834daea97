"""Flow beyond what a method can measure is flagged, and the CLI warns naming the frames."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import torch

from napari_sam2med.engine.progress import run_to_end
from napari_sam2med.flow.limits import format_pairs, implausible_pairs, implausible_warning, measurable_limit
from napari_sam2med.flow.runner import estimate_flow
from napari_sam2med.flow.types import FlowStep, RoiPrompt


class _Fake:
    """Reports ``speeds[t]`` px/frame everywhere, all pixels in ROI 1."""

    name = "fake"
    max_displacement = 20.0

    def __init__(self, speeds):
        self.speeds, self.t = speeds, 0

    def reset(self, first_frame, rois):
        self.shape, self.t = first_frame.shape, 0

    def step(self, next_frame):
        flow = np.zeros(self.shape + (2,), np.float32)
        flow[..., 1] = self.speeds[self.t]
        self.t += 1
        return FlowStep(self.t - 1, flow, np.ones(self.shape, np.int32))


def test_limit_is_reach_or_quarter_frame():
    assert measurable_limit(SimpleNamespace(max_displacement=48.0), (400, 400)) == 48.0
    assert measurable_limit(SimpleNamespace(max_displacement=48.0), (110, 425)) == 27.5
    assert measurable_limit(object(), (64, 200)) == 16.0
    assert implausible_pairs(np.array([[1.0, np.nan], [30.0, 2.0], [2.0, 50.0]]), 20.0) == [1, 2]
    assert format_pairs([3, 4, 5, 9]) == "frames 3-6, 9-10"


def test_runner_flags_the_pairs_and_records_them_in_the_output():
    speeds = [1.0, 2.0, 25.0, 30.0, 1.0, 40.0]
    video = np.random.default_rng(0).random((7, 100, 100), dtype=np.float32)
    out = {}
    result = run_to_end(estimate_flow(video, [RoiPrompt(1, np.array([[5.0, 5.0]]), np.array([1]))], _Fake(speeds),
                                      out=out))
    assert result.speed_limit_px == 20.0
    assert result.implausible_pairs == [2, 3, 5]
    assert out["attrs"]["implausible_pairs"] == [2, 3, 5] and out["attrs"]["speed_limit_px"] == 20.0
    text = implausible_warning(result)
    assert "frames 2-4, 5-6" in text and "20.0 px/frame" in text and "3 of 6" in text
    ok = run_to_end(estimate_flow(video, [RoiPrompt(1, np.array([[5.0, 5.0]]), np.array([1]))], _Fake([1.0] * 6)))
    assert ok.implausible_pairs == [] and implausible_warning(ok) is None


def test_cli_warns_and_names_frames_when_the_model_returns_absurd_flow(tmp_path):
    from napari_sam2med.flow.estimators.sam2flow import save_flow_weights
    from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig

    torch.manual_seed(0)
    model = SAM2Flow(SAM2FlowConfig(match_dim=32, context_dim=32, hidden_dim=32, memory_dim=32, roi_dim=32,
                                    hiera_embed_dim=8, iters=1))
    with torch.no_grad():  # a broken model: 100 low-res px (400 px) per frame everywhere
        model.update.flow_head[-1].bias.fill_(100.0)
    save_flow_weights(model, tmp_path / "broken.pt")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "v.npy", rng.random((4, 32, 48), dtype=np.float32))
    (tmp_path / "p.json").write_text(json.dumps({"rois": [{"id": 1, "points": [[16, 24]], "labels": [1]}]}))
    done = subprocess.run([sys.executable, "-m", "napari_sam2med.cli", "flow", str(tmp_path / "v.npy"), "--points",
                           str(tmp_path / "p.json"), "--out", str(tmp_path / "F.zarr"), "--weights",
                           str(tmp_path / "broken.pt"), "--no-progress", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warning" in done.stderr and "frames 0-3" in done.stderr and "8.0 px/frame" in done.stderr
    assert "no measurable pair" in done.stdout  # the absurd speeds are not printed as a mean
