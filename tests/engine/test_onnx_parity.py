"""Propagation parity with the official SAM2VideoPredictor, with our image encoder on ONNX Runtime.

Reuses ``test_propagation_parity``'s comparison (logits within 1e-3, mask IoU >= 0.999 on every
frame and object), with every Session built with ``engine="onnx"`` (image encoder and memory
attention on ONNX Runtime); SAM2.1-tiny at 128 px.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from napari_sam2med.engine import Session, frame_to_tensor
from napari_sam2med.engine.onnx_memattn import OnnxMemoryAttention
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import build_model, get_config

oracle = pytest.importorskip("oracle")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = [pytest.mark.oracle, pytest.mark.slow]


def _parity_module():
    path = Path(__file__).with_name("test_propagation_parity.py")
    spec = importlib.util.spec_from_file_location("_parity_for_onnx", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    parity = _parity_module()
    torch.manual_seed(0)
    official = oracle.official_video_predictor("sam2.1-tiny", parity.SIZE)
    official.fill_hole_area = 0
    oracle.perturb_(official, seed=1)
    ours = build_model(get_config("sam2.1-tiny", parity.SIZE))
    ours.load_state_dict(official.state_dict(), strict=True)
    stack = FrameStack(oracle.blob_stack(parity.N, parity.H))
    images = torch.cat([frame_to_tensor(stack.normalized(i), parity.SIZE) for i in range(parity.N)])
    return parity, (official, ours.eval(), stack, images), tmp_path_factory.mktemp("sam2med-cache")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_onnx_propagation_matches_official(setup, monkeypatch, reverse):
    parity, data, cache = setup
    monkeypatch.setenv("SAM2MED_CACHE", str(cache))
    sessions = []

    def onnx_session(*args, **kwargs):
        sessions.append(Session(*args, engine="onnx", **kwargs))
        return sessions[-1]

    calls = []
    real = OnnxMemoryAttention.__call__
    monkeypatch.setattr(OnnxMemoryAttention, "__call__", lambda self, **kw: calls.append(1) or real(self, **kw))
    monkeypatch.setattr(parity, "Session", onnx_session)
    parity.test_propagation_matches_official(data, monkeypatch, reverse)
    assert sessions and all(s.encoder.name == "onnx" for s in sessions)  # no silent fallback to torch
    assert calls  # the tracked frames attended to memory through ONNX Runtime
