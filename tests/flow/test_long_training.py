"""Long-unroll fine-tuning (truncated BPTT, memory carried, curriculum on length, run folder, resume)."""

from __future__ import annotations

import json

import torch

from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig
from napari_sam2med.train import flow_long_training as flt


def test_sampler_shapes_and_seeds_disjoint_from_held_out_sets():
    from napari_sam2med.flow.synthetic import LONG_SEED0, LONG_SELECTION_SEED0

    cfg = flt.LongTrainConfig(batch=2, size=32, rois=2, points=5)
    sampler = flt.LongSequenceSampler(cfg)
    frames, flow, masks, vessel, pts, labs = sampler.sequence(5)
    assert frames.shape == (2, 6, 1, 32, 32) and flow.shape == (2, 5, 2, 32, 32)
    assert masks.shape == (2, 2, 32, 32) and vessel.shape == (2, 32, 32)
    assert pts.shape == (2, 2, 5, 2) and labs.shape == (2, 2, 5)
    assert flt.TRAIN_SEED0 > LONG_SELECTION_SEED0 + 1_000_000 > LONG_SEED0 + 1_000_000
    assert sampler.next_seed > flt.TRAIN_SEED0


def test_sequence_length_curriculum_reaches_the_long_unroll():
    cfg = flt.LongTrainConfig(min_len=8, max_len=48, chunk=4, curriculum=0.5)
    assert flt.sequence_length(cfg, 0.0) == 8
    assert flt.sequence_length(cfg, 0.5) == flt.sequence_length(cfg, 1.0) == 48 >= 32
    assert all(flt.sequence_length(cfg, p / 10) % 4 == 0 for p in range(11))


def test_train_long_writes_a_run_folder_carries_memory_and_resumes(tmp_path, monkeypatch):
    calls = []
    original = SAM2Flow.forward

    def spy(self, frames, *args, bank=None, **kw):
        calls.append(0 if bank is None else len(bank))
        return original(self, frames, *args, bank=bank, **kw)

    monkeypatch.setattr(SAM2Flow, "forward", spy)
    small = SAM2FlowConfig(match_dim=32, context_dim=32, hidden_dim=32, memory_dim=32, roi_dim=32,
                           hiera_embed_dim=8, iters=1, feedback="gated")
    monkeypatch.setattr(flt, "SAM2FlowConfig", lambda **kw: small)
    cfg = flt.LongTrainConfig(steps=2, batch=1, size=32, chunk=2, min_len=4, max_len=4, iters=1, ckpt_minutes=0.0)
    run = tmp_path / "run"
    flt.train_long(cfg, run, log=lambda s: None)
    assert calls == [0, 2]  # the second window starts from the first window's memory (2 pairs)
    assert (run / "final.pt").is_file() and (run / "last.pt").is_file()
    assert json.loads((run / "config.json").read_text())["train"]["max_len"] == 4
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["step"] == 2 and ck["next_seed"] > flt.TRAIN_SEED0  # the sampler resumes with new videos
    lines = []
    flt.train_long(flt.LongTrainConfig(**{**vars(cfg), "steps": 4}), run, resume=True, log=lines.append)
    assert lines[0].startswith("resumed") and "at step 2" in lines[0]
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 4
