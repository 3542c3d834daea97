"""SLM-SAM2 short-long memory in the model: state-dict layout, loading, identity init, shapes."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_sam2med.engine import Session
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import SLMConfig, build_model, get_config, load_weights
from napari_sam2med.sam2.model import MemoryContext
from napari_sam2med.sam2.slm import SLM_KEY_PREFIXES, attach_slm, has_slm, slm_state_keys

oracle = pytest.importorskip("oracle")



@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    m = build_model(get_config("sam2.1-test", 64))
    oracle.perturb_(m, seed=3)
    return m


@pytest.fixture(scope="module")
def stack():
    return FrameStack(oracle.blob_stack(12, 48))


def _propagate_logits(model, stack, memory):
    s = Session(model, stack, memory=memory)
    s.add_points(1, 3, [[17, 17]], [1])
    out = {step.slice_idx: step.logits[1] for step in s.propagate("both")}
    return torch.cat([out[k] for k in sorted(out)])


def _save(model, path):
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.mark.oracle
def test_state_dict_matches_slm_sam2_layout(tmp_path):
    """A checkpoint laid out like SLM-SAM2's release loads strictly into our SLM model.

    SLM-SAM2 builds SAM2Base from the official modules plus ``recent_memory_attention`` (an
    official ``MemoryAttention`` of the same config), ``recent_memory_fuser`` (a Fuser of two
    ConvNeXt blocks, same parameters as the official memory-encoder ``Fuser``/``CXBlock``) and
    ``rec_maskmem_tpos_enc``; we rebuild that layout from the official ``sam2`` package.
    """
    fuser_mod = pytest.importorskip("sam2.modeling.memory_encoder")
    official = oracle.official_video_predictor("sam2.1-tiny", 256)
    official.recent_memory_attention = copy.deepcopy(official.memory_attention)
    official.recent_memory_fuser = fuser_mod.Fuser(
        fuser_mod.CXBlock(dim=256, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
        num_layers=2)
    official.rec_maskmem_tpos_enc = torch.nn.Parameter(torch.randn(7, 1, 1, 64))
    theirs = {k: v for k, v in official.state_dict().items()}
    ours = build_model(replace(get_config("sam2.1-tiny", 256), slm=SLMConfig()))
    mine = ours.state_dict()
    assert slm_state_keys(theirs) == slm_state_keys(mine)
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in mine.items()}
    # A plain model picks the SLM modules up from such a checkpoint, strictly.
    plain = build_model(get_config("sam2.1-tiny", 256))
    load_weights(plain, _save(official, tmp_path / "slm.pt"))
    assert has_slm(plain)
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(v, theirs[k], msg=k)


def test_shapes_and_finite(base):
    model = attach_slm(copy.deepcopy(base), SLMConfig(short_init_scale=1.0))
    cfg = model.config
    feats = model.encode_image(torch.rand(2, 3, cfg.image_size, cfg.image_size))
    s = cfg.feat_size
    mem = [torch.randn(2, cfg.mem_dim, s, s) for _ in range(3)]
    ptr = [torch.randn(2, cfg.d_model) for _ in range(3)]
    recent = MemoryContext(spatial=[(cfg.num_maskmem - 1, mem[2])], pointers=[(1, ptr[2])], ptr_tpos_max=5)
    ctx = MemoryContext(spatial=[(0, mem[0]), (5, mem[1]), (6, mem[2])],
                        pointers=[(3, ptr[0]), (2, ptr[1]), (1, ptr[2])], ptr_tpos_max=5, recent=recent)
    with torch.no_grad():
        out = model.track_step(feats, memory=ctx)
        long_only = model.track_step(feats, memory=MemoryContext(ctx.spatial, ctx.pointers, 5))
    assert out.low_res_masks.shape == (2, 1, cfg.image_size // 4, cfg.image_size // 4)
    assert out.high_res_masks.shape == (2, 1, cfg.image_size, cfg.image_size)
    assert out.obj_ptr.shape == (2, cfg.d_model) and out.maskmem_features.shape == (2, cfg.mem_dim, s, s)
    for t in (out.low_res_masks, out.obj_ptr, out.object_score_logits, out.maskmem_features):
        assert torch.isfinite(t).all()
    assert not torch.allclose(out.low_res_masks, long_only.low_res_masks)  # the short branch is used
    with pytest.raises(ValueError, match="SLM"):
        base.track_step(feats, memory=ctx)  # a plain model refuses a short-term context


def test_identity_init_reproduces_sam2_masks(base, stack, tmp_path):
    """Plain SAM2 weights loaded into an SLM model: SAM2's masks, up to borderline pixels."""
    ckpt = _save(base, tmp_path / "plain.pt")
    slm_model = build_model(replace(get_config("sam2.1-test", 64), slm=SLMConfig()))
    load_weights(slm_model, ckpt)  # plain checkpoint: SLM modules initialised from the long branch
    assert has_slm(slm_model)
    ref = _propagate_logits(base, stack, "sam2")
    got = _propagate_logits(slm_model, stack, "slm")
    diff = (ref - got).abs()
    assert diff.max() <= 0.01 * ref.abs().max()
    flipped = (ref > 0) != (got > 0)
    assert (ref.abs()[flipped] <= diff.max()).all()  # only pixels within the tiny deviation flip
    assert flipped.float().mean() < 1e-3
    # Without the identity initialisation (short branch at full scale) the masks really differ.
    far = attach_slm(copy.deepcopy(base), SLMConfig(short_init_scale=1.0))
    other = _propagate_logits(far, stack, "slm")
    assert ((ref > 0) != (other > 0)).float().mean() > 10 * flipped.float().mean() + 1e-3


def test_session_slm_attaches_modules_and_sam2_memory_ignores_them(base, stack):
    model = copy.deepcopy(base)
    ref = _propagate_logits(model, stack, "sam2")
    Session(model, stack, memory="slm")
    assert has_slm(model) and model.config.slm == SLMConfig()
    # SAM2's memory on a model that carries SLM modules: exactly SAM2 (the short branch is unused).
    torch.testing.assert_close(_propagate_logits(model, stack, "sam2"), ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="memory must be one of"):
        Session(model, stack, memory="lstm")


def test_slm_checkpoint_round_trip(base, stack, tmp_path):
    trained = attach_slm(copy.deepcopy(base), SLMConfig(short_init_scale=1.0))
    with torch.no_grad():
        for n, p in trained.named_parameters():
            if n.startswith(SLM_KEY_PREFIXES):
                p.add_(0.01 * torch.randn_like(p))
    ckpt = _save(trained, tmp_path / "slm.pt")
    plain = build_model(get_config("sam2.1-test", 64))
    load_weights(plain, ckpt)
    np.testing.assert_array_equal(_propagate_logits(plain, stack, "slm").numpy(),
                                  _propagate_logits(trained, stack, "slm").numpy())
    bad = tmp_path / "bad.pt"
    torch.save({"model": {k: v for k, v in trained.state_dict().items()
                          if not k.startswith("recent_memory_fuser.")}}, bad)
    with pytest.raises(ValueError, match="does not match"):
        load_weights(build_model(get_config("sam2.1-test", 64)), bad)
