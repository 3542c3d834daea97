"""Parity of memory attention, memory encoder and positional encodings with official SAM2."""

import math

import pytest
import torch

official_pe = pytest.importorskip("sam2.modeling.position_encoding")
official_ma = pytest.importorskip("sam2.modeling.memory_attention")
official_me = pytest.importorskip("sam2.modeling.memory_encoder")
official_tr = pytest.importorskip("sam2.modeling.sam.transformer")
official_utils = pytest.importorskip("sam2.modeling.sam2_utils")

from napari_sam2med.sam2 import memory_attention as ma  # noqa: E402
from napari_sam2med.sam2 import memory_encoder as me  # noqa: E402
from napari_sam2med.sam2 import position_encoding as pe  # noqa: E402
from napari_sam2med.sam2.transformer import RoPEAttention  # noqa: E402
from oracle import max_abs_diff, mirrored, perturbed  # noqa: E402  (tests/oracle.py)

D_MODEL, MEM_DIM = 256, 64


def _memory_attention(lib, rope_cls):
    """SAM2.1-tiny memory attention built from module ``lib``."""
    self_attn = rope_cls(
        rope_theta=10000.0, feat_sizes=(16, 16), embedding_dim=D_MODEL, num_heads=1,
        downsample_rate=1, dropout=0.1,
    )
    cross_attn = rope_cls(
        rope_theta=10000.0, feat_sizes=(16, 16), rope_k_repeat=True, embedding_dim=D_MODEL,
        num_heads=1, downsample_rate=1, dropout=0.1, kv_in_dim=MEM_DIM,
    )
    layer = lib.MemoryAttentionLayer(
        activation="relu", cross_attention=cross_attn, d_model=D_MODEL, dim_feedforward=2048,
        dropout=0.1, pos_enc_at_attn=False, pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False, self_attention=self_attn,
    )
    return lib.MemoryAttention(d_model=D_MODEL, pos_enc_at_input=True, layer=layer, num_layers=4)


@pytest.fixture(scope="module")
def memory_attentions():
    torch.manual_seed(0)
    off = perturbed(_memory_attention(official_ma, official_tr.RoPEAttention), 1)
    ours = mirrored(off, _memory_attention(ma, RoPEAttention))
    assert any(k.startswith("layers.3.cross_attn_image.k_proj") for k in ours.state_dict())
    return off, ours


@pytest.mark.parametrize("side", [16, 32])
def test_memory_attention_matches_official(memory_attentions, side):
    off, ours = memory_attentions
    gen = torch.Generator().manual_seed(side)
    n, batch, n_ptr = side * side, 2, 8
    curr = torch.randn(n, batch, D_MODEL, generator=gen)
    curr_pos = torch.randn(n, batch, D_MODEL, generator=gen)
    memory = torch.randn(2 * n + n_ptr, batch, MEM_DIM, generator=gen)
    memory_pos = torch.randn(2 * n + n_ptr, batch, MEM_DIM, generator=gen)
    with torch.no_grad():
        out_off = off(curr, memory.clone(), curr_pos, memory_pos, num_obj_ptr_tokens=n_ptr)
        out_ours = ours(curr, memory.clone(), curr_pos, memory_pos, num_obj_ptr_tokens=n_ptr)
        # Object-pointer tokens must change the output (they are attended to).
        out_no_ptr = ours(curr, memory[: 2 * n], curr_pos, memory_pos[: 2 * n])
    assert out_ours.shape == (n, batch, D_MODEL)
    assert max_abs_diff(out_ours, out_off) <= 1e-4
    assert max_abs_diff(out_ours, out_no_ptr) > 1e-3


def test_rope_attention_rejects_non_grid_queries():
    attn = RoPEAttention(32, 1, feat_sizes=(4, 4)).eval()
    x = torch.randn(1, 15, 32)
    with pytest.raises(ValueError, match="grid"):
        attn(x, x, x)
    # A non-square grid works when its size is given.
    y = torch.randn(1, 12, 32)
    assert attn(y, y, y, feat_hw=(3, 4)).shape == (1, 12, 32)


def _memory_encoder(lib, pe_cls):
    return lib.MemoryEncoder(
        out_dim=MEM_DIM,
        mask_downsampler=lib.MaskDownSampler(kernel_size=3, stride=2, padding=1),
        fuser=lib.Fuser(lib.CXBlock(dim=256, kernel_size=7, padding=3, layer_scale_init_value=1e-6), num_layers=2),
        position_encoding=pe_cls(num_pos_feats=64, normalize=True, scale=None, temperature=10000),
    )


@pytest.fixture(scope="module")
def memory_encoders():
    torch.manual_seed(0)
    off = perturbed(_memory_encoder(official_me, official_pe.PositionEmbeddingSine), 3)
    return off, mirrored(off, _memory_encoder(me, pe.PositionEmbeddingSine))


@pytest.mark.parametrize("skip_sigmoid", [False, True])
def test_memory_encoder_matches_official(memory_encoders, skip_sigmoid):
    off, ours = memory_encoders
    gen = torch.Generator().manual_seed(9)
    pix = torch.randn(2, 256, 16, 16, generator=gen)
    masks = 10 * torch.randn(2, 1, 256, 256, generator=gen)
    if skip_sigmoid:
        masks = (masks > 0).float()
    with torch.no_grad():
        o_off = off(pix, masks, skip_mask_sigmoid=skip_sigmoid)
        o_ours = ours(pix, masks, skip_mask_sigmoid=skip_sigmoid)
    assert set(o_ours) == {"vision_features", "vision_pos_enc"}
    assert o_ours["vision_features"].shape == (2, MEM_DIM, 16, 16)
    assert o_off["vision_features"].std() > 1e-2
    assert max_abs_diff(o_ours["vision_features"], o_off["vision_features"]) <= 1e-4
    assert len(o_ours["vision_pos_enc"]) == 1
    assert max_abs_diff(o_ours["vision_pos_enc"][0], o_off["vision_pos_enc"][0]) <= 1e-5


def test_get_1d_sine_pe_matches_official():
    pos = torch.tensor([[0.0, 1.0, 2.5], [-3.0, 7.0, 100.0]])
    ours = pe.get_1d_sine_pe(pos, dim=64)
    assert ours.shape == (2, 3, 64)
    assert max_abs_diff(ours, official_utils.get_1d_sine_pe(pos, dim=64)) <= 1e-6
    assert torch.allclose(ours[0, 0, 32:], torch.ones(32))  # cos(0) half


def test_position_embedding_random_matches_official():
    torch.manual_seed(4)
    ours = pe.PositionEmbeddingRandom(64)
    off = official_pe.PositionEmbeddingRandom(64)
    off.load_state_dict(ours.state_dict(), strict=True)
    assert max_abs_diff(ours((12, 20)), off((12, 20))) <= 1e-5
    coords = torch.tensor([[[0.0, 0.0], [100.5, 37.0], [255.0, 127.0]]])
    a = ours.forward_with_coords(coords, (128, 256))
    assert a.shape == (1, 3, 128)
    assert max_abs_diff(a, off.forward_with_coords(coords, (128, 256))) <= 1e-5


@pytest.mark.parametrize("shape", [(16, 16), (12, 20)])
def test_position_embedding_sine_matches_official(shape):
    x = torch.zeros(2, 3, *shape)
    for feats in (64, 256):
        ours = pe.PositionEmbeddingSine(feats)(x)
        assert ours.shape == (2, feats, *shape)
        assert max_abs_diff(ours, official_pe.PositionEmbeddingSine(feats)(x)) <= 1e-6


def test_axial_rope_matches_official_complex():
    cos, sin = pe.compute_axial_rope(32, 8, 6, theta=10000.0)
    cis = official_pe.compute_axial_cis(32, 8, 6, theta=10000.0)
    assert max_abs_diff(cos, cis.real) <= 1e-5 and max_abs_diff(sin, cis.imag) <= 1e-5
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(2, 1, 48, 32, generator=gen)
    k = torch.randn(2, 1, 96, 32, generator=gen)
    q_ours, k_ours = pe.apply_axial_rope(q, k, (cos, sin), repeat_freqs_k=True)
    q_off, k_off = official_pe.apply_rotary_enc(q, k, cis, repeat_freqs_k=True)
    assert max_abs_diff(q_ours, q_off) <= 1e-5 and max_abs_diff(k_ours, k_off) <= 1e-5
    # Rotations preserve norms.
    assert torch.allclose(q_ours.norm(dim=-1), q.norm(dim=-1), atol=1e-4)
    assert not math.isclose(max_abs_diff(q_ours, q), 0.0)
