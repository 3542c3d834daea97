"""CUDA path: bf16 autocast propagation agrees with CPU fp32 (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from napari_sam2med.engine import Session, run_to_end
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import build_model, get_config, pick_device

oracle = pytest.importorskip("oracle")
pytestmark = pytest.mark.gpu


def test_auto_device_prefers_cuda():
    assert pick_device("auto").type == "cuda"


def test_bf16_cuda_propagation_matches_cpu():
    torch.manual_seed(0)
    cpu = build_model(get_config("sam2.1-tiny", 256))
    oracle.perturb_(cpu, seed=1)
    gpu = build_model(get_config("sam2.1-tiny", 256))
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.to("cuda")
    stack = FrameStack(oracle.blob_stack(8, 96))
    out = []
    for model in (cpu, gpu):
        s = Session(model, stack)
        s.add_points(1, 0, [[30, 33]], [1])
        s.set_box(2, 0, [52, 42, 74, 66])
        out.append(run_to_end(s.propagate("forward")))
    for oid in (1, 2):
        a, b = out[0] == oid, out[1] == oid
        union = (a | b).sum()
        assert union == 0 or (a & b).sum() / union > 0.9
