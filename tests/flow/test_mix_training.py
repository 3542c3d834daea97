"""Mixed fine-tune (realistic short clips + carried-memory long unrolls): run folder, both step kinds, resume."""

from __future__ import annotations

import json

import numpy as np
import torch

from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig
from napari_sam2med.train import flow_mix_training as fmt

SMALL = SAM2FlowConfig(match_dim=32, context_dim=32, hidden_dim=32, memory_dim=32, roi_dim=32,
                       hiera_embed_dim=8, iters=1, feedback="gated")


def test_realistic_training_videos_use_the_realism_options():
    cfg = fmt.MixConfig(tissue_frac=1.0)
    c = fmt.realistic_config(fmt.TRAIN_SEED0 + 1, 8, 64, np.random.default_rng(0), cfg)
    assert c.realistic and c.tail_speed == 15.0 and 0.5 <= c.tissue_motion <= cfg.tissue_max
    assert c.cell_texture == "linescan" and c.seed >= fmt.TRAIN_SEED0 > 31_000_000 + 1_000_000


def test_train_mix_runs_both_step_kinds_carries_memory_and_resumes(tmp_path, monkeypatch):
    calls = []
    original = SAM2Flow.forward

    def spy(self, frames, *args, bank=None, **kw):
        calls.append((frames.shape[1], None if bank is None else len(bank)))
        return original(self, frames, *args, bank=bank, **kw)

    monkeypatch.setattr(SAM2Flow, "forward", spy)
    monkeypatch.setattr(fmt, "SAM2FlowConfig", lambda **kw: SMALL)
    cfg = fmt.MixConfig(steps=2, batch=1, pool=2, long_frac=1.0, long_size=32, chunk=2, min_len=4, max_len=4,
                        ckpt_minutes=0.0, snapshot_minutes=0.0)
    run = tmp_path / "run"
    fmt.train_mix(cfg, run, log=lambda s: None)
    # one 4-pair sequence in two windows; the second starts from the first window's memory
    assert calls == [(3, 0), (3, 2)]
    assert (run / "final.pt").is_file() and (run / "last.pt").is_file() and list(run.glob("step_*.pt"))
    assert json.loads((run / "config.json").read_text())["train"]["long_frac"] == 1.0
    calls.clear()
    lines = []
    fmt.train_mix(fmt.MixConfig(**{**vars(cfg), "steps": 3, "long_frac": 0.0}), run, resume=True, log=lines.append)
    assert lines[0].startswith("resumed") and "at step 2" in lines[0]
    assert calls == [(3, None)]  # a short 3-frame clip with a fresh memory
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 3


def test_freeze_gate_keeps_the_warm_start_gate_out_of_training(tmp_path, monkeypatch):
    monkeypatch.setattr(fmt, "SAM2FlowConfig", lambda **kw: SMALL)
    cfg = fmt.MixConfig(steps=2, batch=1, pool=2, long_frac=1.0, long_size=32, chunk=1, min_len=2, max_len=2,
                        lr=1e-2, ckpt_minutes=0.0, snapshot_minutes=100.0)
    gates = {}
    for freeze in (True, False):
        torch.manual_seed(0)
        model = fmt.train_mix(fmt.MixConfig(**{**vars(cfg), "freeze_gate": freeze}), tmp_path / str(freeze),
                              log=lambda s: None)
        gates[freeze] = torch.cat([p.detach().flatten() for p in model.warm_gate.parameters()])
    assert torch.all(gates[True] == 0)  # still the shipped/initial value: sigmoid(0) = 0.5 everywhere
    assert gates[False].abs().max() > 0  # the second pair's warm start trains an unfrozen gate


def test_command_line_reads_boolean_flags_and_config_fields(monkeypatch):
    from napari_sam2med.train import flow_driver

    seen = []
    flow_driver.run_main(fmt.MixConfig, lambda cfg, run, init, resume, log: seen.append((cfg, run, resume)), "x",
                         ["--run", "r", "--freeze-gate", "--lr", "2e-5", "--max-len", "64", "--threads", "1"])
    cfg, run, resume = seen[0]
    assert cfg.freeze_gate is True and cfg.lr == 2e-5 and cfg.max_len == 64 and str(run) == "r" and not resume
    flow_driver.run_main(fmt.MixConfig, lambda cfg, run, init, resume, log: seen.append(cfg), "x",
                         ["--run", "r", "--no-freeze-gate"])
    assert seen[1].freeze_gate is False
