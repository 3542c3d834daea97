"""The tracking parts on ONNX Runtime (and OpenVINO when installed): the memory attention, exact
against PyTorch for any memory length, pointer count and object batch, and the decoder + memory
encoder of a tracked frame; both used by propagation through the engine choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import oracle  # tests/oracle.py
from napari_sam2med.engine import Session, onnx_engine
from napari_sam2med.engine.encoders import AutoEncoder, RuntimeEngine, make_encoder
from napari_sam2med.engine.onnx_heads import OnnxTrackHeads
from napari_sam2med.engine.onnx_memattn import MemAttnGraph, OnnxMemoryAttention, key_rope_tables
from napari_sam2med.engine.propagation import torch_heads
from napari_sam2med.sam2 import build_model, get_config

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SIZE = 64  # a 4x4 token grid: the rotary tables still vary across tokens
LAYOUTS = [(1, 0), (2, 4), (3, 16)]  # (spatial memory frames, pointer tokens)


def _model():
    torch.manual_seed(0)
    model = build_model(get_config("sam2.1-test", SIZE)).eval()
    oracle.perturb_(model, seed=1)
    return model.requires_grad_(False)


def _inputs(model, frames, n_ptr, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    hw, c = (SIZE // 16) ** 2, model.config.d_model
    mem_dim = model.memory_attention.layers[0].cross_attn_image.kv_in_dim
    m = frames * hw + n_ptr
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(curr=[rnd(hw, batch, c)], curr_pos=[rnd(hw, batch, c)], memory=rnd(m, batch, mem_dim),
                memory_pos=rnd(m, batch, mem_dim), num_obj_ptr_tokens=n_ptr)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _model()
    folder = tmp_path_factory.mktemp("sam2med-cache") / "onnx"
    with torch.inference_mode():  # sessions build their engine under inference mode
        engine = RuntimeEngine(model, "onnx", folder)  # exports the encoder; the attention on first use
        attn = engine.memory_attention()
        assert isinstance(engine.track_heads(), OnnxTrackHeads)
    assert isinstance(attn, OnnxMemoryAttention)
    return model, folder, attn


@pytest.mark.parametrize("frames,n_ptr", LAYOUTS)
def test_graph_in_torch_equals_the_module(frames, n_ptr):
    """The exported wrapper (real-valued RoPE, key table as input, low-rank values) computes the
    model's memory attention, before any export."""
    model = _model()
    grid = (SIZE // 16, SIZE // 16)
    graph = MemAttnGraph(model.memory_attention, grid, q_chunk=3)  # chunks of 3 of 16 queries: uneven split
    kw = _inputs(model, frames, n_ptr, batch=2)
    cos, sin = key_rope_tables(model.memory_attention, grid, frames, n_ptr)
    bf = lambda t: t.transpose(0, 1)  # noqa: E731
    with torch.inference_mode():
        ref = model.memory_attention(**kw)
        got = bf(graph(bf(kw["curr"][0]), bf(kw["curr_pos"][0]), bf(kw["memory"]), bf(kw["memory_pos"]), cos, sin))
    assert (got - ref).abs().max().item() <= 1e-5
    assert ref.abs().max() > 0.1


@pytest.mark.slow  # the module fixture exports three graphs (tens of seconds)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("frames,n_ptr", LAYOUTS)
def test_onnx_memory_attention_matches_pytorch(exported, frames, n_ptr, batch):
    """One export, dynamic object batch and memory length, within 1e-4 of the PyTorch module."""
    model, _, attn = exported
    kw = _inputs(model, frames, n_ptr, batch, seed=frames + batch)
    with torch.inference_mode():
        ref = model.memory_attention(**kw)
    got = attn(**kw)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= 1e-4
    other = _inputs(model, frames, n_ptr, batch, seed=99)
    other["curr"] = kw["curr"]
    assert (attn(**other) - got).abs().max() > 1e-2  # the memory matters: not a constant graph


@pytest.mark.slow  # the module fixture exports three graphs (tens of seconds)
@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_heads_match_pytorch(exported, batch):
    """Decoder (no prompt) + memory encoder of a tracked frame: every output within 1e-4 of PyTorch."""
    model, folder, _ = exported
    heads = OnnxTrackHeads(model, folder=folder, threads=1)  # from the cache
    g = torch.Generator().manual_seed(batch)
    h, c = SIZE // 16, model.config.d_model
    with torch.inference_mode():
        x = torch.randn(batch, 3, SIZE, SIZE, generator=g)
        feats = model.encode_image(x)
        pix = feats.vision + 0.5 * torch.randn(batch, c, h, h, generator=g)
        ref, got = torch_heads(model, pix, feats), heads(pix, feats)
    for name in ("low_res_masks", "high_res_masks", "ious", "obj_ptr", "object_score_logits", "multimask_logits",
                 "maskmem_features"):
        a, b = getattr(got, name), getattr(ref, name)
        assert a.shape == b.shape, name
        assert (a - b.float()).abs().max().item() <= 1e-4, name
    assert ref.low_res_masks.std() > 0.01 and ref.maskmem_features.std() > 0.01  # not degenerate


@pytest.mark.slow  # the module fixture exports three graphs (tens of seconds)
def test_onnx_memory_attention_rejects_a_bad_layout(exported):
    model, _, attn = exported
    kw = _inputs(model, 2, 4, 1)
    kw["num_obj_ptr_tokens"] = 3  # 2 * 16 + 1 spatial tokens are not whole frames
    with pytest.raises(ValueError, match="not whole frames"):
        attn(**kw)


@pytest.mark.slow  # the module fixture exports three graphs (tens of seconds)
def test_cache_holds_one_file_per_part(exported):
    model, folder, attn = exported
    assert attn.path.name == onnx_engine.export_key(model, "memattn").filename
    assert "-memattn-64px-" in attn.path.name
    again = OnnxMemoryAttention(model, folder=folder, threads=1)  # from the cache
    assert again.path == attn.path
    assert len(list(folder.glob("*-memattn-*.onnx"))) == 1
    assert sorted(p.name.split("-test-")[1].split("-")[0] for p in folder.glob("*.onnx")) == [
        "encoder", "heads", "memattn"]
    with torch.no_grad():
        other = _model()
        other.memory_attention.layers[0].linear1.bias.add_(1e-3)
    assert onnx_engine.export_key(other, "memattn") != onnx_engine.export_key(model, "memattn")
    assert onnx_engine.export_key(other, "encoder") == onnx_engine.export_key(model, "encoder")


def _blobs():
    return oracle.blob_stack(5, 48)


def _propagate(model, engine):
    s = Session(model, _blobs(), engine=engine)
    s.add_points(1, 0, [[17.0, 17.0], [40.0, 40.0]], [1, 0])
    s.set_box(2, 0, [25.0, 20.0, 37.0, 34.0])
    return s, {st.slice_idx: dict(st.logits) for st in s.propagate("forward")}


@pytest.mark.slow  # the module fixture exports three graphs (tens of seconds)
def test_propagation_uses_onnx_attention_and_matches_torch(exported, monkeypatch):
    model, folder, _ = exported
    monkeypatch.setenv("SAM2MED_CACHE", str(folder.parent))
    calls = []
    real, real_heads = OnnxMemoryAttention.__call__, OnnxTrackHeads.__call__
    monkeypatch.setattr(OnnxMemoryAttention, "__call__", lambda self, **kw: calls.append("a") or real(self, **kw))
    monkeypatch.setattr(OnnxTrackHeads, "__call__", lambda self, *a: calls.append("h") or real_heads(self, *a))
    _, ref = _propagate(model, "torch")
    assert not calls
    s, got = _propagate(model, "onnx")
    assert isinstance(s.encoder, RuntimeEngine) and s.encoder.name == "onnx"
    assert calls == ["a", "h"] * 4  # frames 1..4 (frame 0 is prompted), both objects in one batch
    positive = 0
    for f in ref:
        for o in ref[f]:
            assert (got[f][o] - ref[f][o]).abs().max().item() <= 1e-3
            positive += int((ref[f][o] > 0).sum())
    assert positive > 0


@pytest.mark.slow  # the module fixture exports three graphs (tens of seconds)
def test_attention_export_failure_falls_back_with_one_line(exported, monkeypatch, caplog):
    model, folder, _ = exported

    def broken(m, path):
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(onnx_engine, "export_memattn", broken)
    engine = make_encoder(model, "onnx", folder=folder)  # the encoder from the cache
    engine.folder = folder.parent / "fresh"  # where no attention is cached
    with caplog.at_level("WARNING"):
        assert engine.memory_attention() is None
        assert engine.memory_attention() is None  # asked again: no second export, no second line
    lines = [r.getMessage() for r in caplog.records if "memory attention could not be exported" in r.getMessage()]
    assert len(lines) == 1 and "aten::frobnicate" in lines[0]


@pytest.mark.slow  # the module fixture exports three graphs (tens of seconds)
def test_auto_chooses_an_attention(exported, monkeypatch):
    model, folder, _ = exported
    engine = make_encoder(model, "auto", folder=folder)
    assert isinstance(engine, AutoEncoder)
    attn = engine.memory_attention()
    kw = _inputs(model, 2, 4, 2)
    with torch.inference_mode():
        ref = model.memory_attention(**kw)
        out = attn(**kw)
    assert set(attn.timings) >= {"torch", "onnx"} and attn.name.startswith("auto:")
    assert (out - ref).abs().max().item() <= 1e-4


@pytest.mark.slow  # the module fixture exports three graphs (tens of seconds)
def test_openvino_runtime_matches_pytorch(exported):
    pytest.importorskip("openvino")
    model, folder, _ = exported
    with torch.inference_mode():
        engine = make_encoder(model, "openvino", folder=folder)
        assert isinstance(engine, RuntimeEngine) and engine.name == "openvino"
        x = torch.randn(1, 3, SIZE, SIZE)
        ref, got = model.encode_image(x), engine(x)
        assert (ref.vision - got.vision).abs().max().item() <= 1e-3
        kw = _inputs(model, 3, 16, 2)
        diff = (engine.memory_attention()(**kw) - model.memory_attention(**kw)).abs().max().item()
        feats = model.encode_image(torch.randn(2, 3, SIZE, SIZE))
        heads_diff = (engine.track_heads()(feats.vision, feats).low_res_masks
                      - torch_heads(model, feats.vision, feats).low_res_masks).abs().max().item()
    assert diff <= 1e-4 and heads_diff <= 1e-4
    assert np.isfinite(diff)
