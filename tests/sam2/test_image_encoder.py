"""Tests of the SAM2 image encoder (Hiera trunk + FPN neck) against the official code."""

from __future__ import annotations

import pytest
import torch

from napari_sam2med.sam2.hiera import DropPath, Hiera, window_partition, window_unpartition
from napari_sam2med.sam2.image_encoder import FpnNeck, ImageEncoder
from napari_sam2med.sam2.position_encoding import PositionEmbeddingSine

TOL = 1e-4

# SAM2.1-tiny image encoder (configs/sam2.1/sam2.1_hiera_t.yaml).
TINY_TRUNK = dict(
    embed_dim=96,
    num_heads=1,
    stages=[1, 2, 7, 2],
    global_att_blocks=[5, 7, 9],
    window_pos_embed_bkg_spatial_size=[7, 7],
)
TINY_NECK = dict(
    d_model=256,
    backbone_channel_list=[768, 384, 192, 96],
    fpn_top_down_levels=[2, 3],
    fpn_interp_model="nearest",
)
# Small custom trunk.  Global attention only on block 3: the official class divides
# by zero when a global-attention block also pools queries (block 2 here).
CUSTOM_TRUNK = dict(
    embed_dim=32, num_heads=1, stages=[1, 1, 2, 1], global_att_blocks=[3], window_spec=[8, 4, 4, 2]
)
CUSTOM_NECK = dict(d_model=64, backbone_channel_list=[256, 128, 64, 32], fpn_top_down_levels=[2, 3])


@pytest.fixture(scope="module")
def official():
    pytest.importorskip("sam2")
    from sam2.modeling.backbones.hieradet import Hiera as OfficialHiera
    from sam2.modeling.backbones.image_encoder import FpnNeck as OfficialNeck
    from sam2.modeling.backbones.image_encoder import ImageEncoder as OfficialEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine as OfficialSine

    return OfficialHiera, OfficialNeck, OfficialEncoder, OfficialSine


def _perturb(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))


def _encoder_pair(official, trunk_kwargs, neck_kwargs, seed=0):
    """Official encoder with seeded random weights and ours loaded from it, both eval."""
    OfficialHiera, OfficialNeck, OfficialEncoder, OfficialSine = official
    d_model = neck_kwargs["d_model"]
    torch.manual_seed(seed)
    theirs = OfficialEncoder(
        OfficialHiera(**trunk_kwargs),
        OfficialNeck(position_encoding=OfficialSine(d_model), **neck_kwargs),
        scalp=1,
    ).eval()
    _perturb(theirs, seed + 1)
    ours = ImageEncoder(
        Hiera(**trunk_kwargs),
        FpnNeck(position_encoding=PositionEmbeddingSine(d_model), **neck_kwargs),
        scalp=1,
    ).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.fixture(scope="module")
def tiny_pair(official):
    return _encoder_pair(official, TINY_TRUNK, TINY_NECK)


def _assert_outputs_match(ours_out: dict, ref_out: dict) -> None:
    assert set(ours_out) == {"vision_features", "vision_pos_enc", "backbone_fpn"}
    pairs = [("vision_features", ours_out["vision_features"], ref_out["vision_features"])]
    for key in ("backbone_fpn", "vision_pos_enc"):
        assert len(ours_out[key]) == len(ref_out[key])
        pairs += [(f"{key}[{i}]", a, b) for i, (a, b) in enumerate(zip(ours_out[key], ref_out[key]))]
    for name, a, b in pairs:
        assert a.shape == b.shape, name
        assert a.dtype == b.dtype, name
        diff = (a - b).abs().max().item()
        assert diff <= TOL, f"{name}: max abs diff {diff:.3g}"


def test_state_dict_keys_identical(tiny_pair):
    ours, theirs = tiny_pair
    ours_sd, ref_sd = ours.state_dict(), theirs.state_dict()
    assert set(ours_sd) == set(ref_sd)
    assert all(ours_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    for key in ("trunk.pos_embed", "trunk.pos_embed_window", "trunk.patch_embed.proj.weight",
                "trunk.blocks.1.proj.weight", "trunk.blocks.0.mlp.layers.0.weight",
                "neck.convs.3.conv.weight"):
        assert key in ours_sd


@pytest.mark.parametrize("size", [(256, 256), (128, 128), (128, 192)])
def test_tiny_encoder_matches_official(tiny_pair, size):
    ours, theirs = tiny_pair
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        out, ref = ours(image), theirs(image)
    # Guard against a trivially passing comparison of degenerate outputs.
    assert ref["vision_features"].std() > 0.1
    _assert_outputs_match(out, ref)
    h, w = size
    assert [tuple(f.shape[-2:]) for f in out["backbone_fpn"]] == [
        (h // 4, w // 4), (h // 8, w // 8), (h // 16, w // 16)
    ]


def test_custom_config_matches_official(official):
    ours, theirs = _encoder_pair(official, CUSTOM_TRUNK, CUSTOM_NECK, seed=3)
    image = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(11))
    with torch.inference_mode():
        _assert_outputs_match(ours(image), theirs(image))


def test_global_attention_block_with_query_pooling(official):
    # Ours supports a global-attention block that also pools queries (the official
    # class crashes there).  At 128 px block 2 sees a 16x16 map, so an official trunk
    # with a single 16x16 window on that block computes the same global attention.
    OfficialHiera = official[0]
    torch.manual_seed(5)
    theirs = OfficialHiera(
        embed_dim=32, num_heads=1, stages=[1, 1, 2, 1], global_att_blocks=[3],
        window_spec=[8, 16, 4, 2],
    ).eval()
    _perturb(theirs, 6)
    ours = Hiera(
        embed_dim=32, num_heads=1, stages=[1, 1, 2, 1], global_att_blocks=[2, 3],
        window_spec=[8, 4, 4, 2],
    ).eval()
    assert ours.blocks[2].window_size == 0 and ours.blocks[2].q_stride == (2, 2)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    image = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        for a, b in zip(ours(image), theirs(image)):
            assert (a - b).abs().max().item() <= TOL


def test_reduced_config_shapes_64px():
    torch.manual_seed(0)
    trunk = Hiera(embed_dim=16, num_heads=1, stages=[1, 1, 1, 1], global_att_blocks=[3],
                  window_spec=[4, 4, 2, 2], window_pos_embed_bkg_spatial_size=(4, 4))
    assert trunk.channel_list == [128, 64, 32, 16]
    encoder = ImageEncoder(trunk, FpnNeck(d_model=32, backbone_channel_list=trunk.channel_list))
    with torch.inference_mode():
        out = encoder(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in out["backbone_fpn"]] == [(2, 32, 16, 16), (2, 32, 8, 8), (2, 32, 4, 4)]
    assert [tuple(p.shape) for p in out["vision_pos_enc"]] == [(2, 32, 16, 16), (2, 32, 8, 8), (2, 32, 4, 4)]
    assert out["vision_features"] is out["backbone_fpn"][-1]
    assert torch.isfinite(out["vision_features"]).all()
    # Without intermediate layers the trunk returns only the last stage.
    last_only = Hiera(embed_dim=16, stages=[1, 1, 1, 1], global_att_blocks=[3],
                      window_spec=[4, 4, 2, 2], return_interm_layers=False)
    assert last_only.channel_list == [128]
    with torch.inference_mode():
        feats = last_only(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 128, 2, 2)]


def test_window_partition_roundtrip_with_padding():
    x = torch.randn(2, 10, 13, 5)
    windows, grid = window_partition(x, 4)
    assert grid == (3, 4) and windows.shape == (2 * 12, 4, 4, 5)
    assert torch.equal(windows[1, :, :, :], x[0, 0:4, 4:8])  # second window of first image
    assert torch.equal(window_unpartition(windows, grid, (10, 13)), x)


def test_bad_inputs_raise_value_error():
    trunk = Hiera(embed_dim=16, stages=[1, 1, 1, 1], global_att_blocks=[3], window_spec=[4, 4, 2, 2])
    encoder = ImageEncoder(trunk, FpnNeck(d_model=32, backbone_channel_list=trunk.channel_list))
    with pytest.raises(ValueError, match="multiple of 32"):
        encoder(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="do not match"):
        ImageEncoder(trunk, FpnNeck(d_model=32, backbone_channel_list=[64, 32, 16, 8]))
    with pytest.raises(ValueError, match="window_spec"):
        Hiera(stages=[1, 1, 1], window_spec=[8, 4, 14, 7])
    with pytest.raises(ValueError, match="fuse_type"):
        FpnNeck(d_model=32, backbone_channel_list=[16], fuse_type="max")


def test_drop_path_identity_in_eval_and_drops_in_training():
    layer = DropPath(0.5)
    x = torch.ones(400, 3)
    assert torch.equal(layer.eval()(x), x)
    torch.manual_seed(0)
    y = layer.train()(x)
    kept = (y[:, 0] > 0).float().mean().item()
    assert 0.35 < kept < 0.65
    assert set(torch.unique(y).tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("q_stride", [None, (2, 2)])
def test_padded_window_block_equals_zero_padding_then_projection(q_stride):
    """The block projects only real tokens and fills the padding with the bias; check that
    against the literal recipe (zero-pad the normalised map, then project every token)."""
    from napari_sam2med.sam2.hiera import HieraBlock

    torch.manual_seed(0)
    block = HieraBlock(32, 64, num_heads=2, q_stride=q_stride, window_size=6).eval()
    for p in block.parameters():
        p.data.add_(0.1 * torch.randn_like(p))  # non-trivial biases matter here
    x = torch.randn(2, 10, 14, 32)  # 10x14 is padded to 12x18 by 6x6 windows
    with torch.no_grad():
        normed = block.norm1(x)
        shortcut = block.proj(normed)
        if q_stride:
            shortcut = torch.nn.functional.max_pool2d(shortcut.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        windows, grid = window_partition(normed, 6)  # zero padding
        attended = window_unpartition(block.attn(windows), grid, shortcut.shape[1:3])
        ref = shortcut + attended
        ref = ref + block.mlp(block.norm2(ref))
        got = block(x)
    assert got.shape == ref.shape == (2, *shortcut.shape[1:3], 64)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


def test_cached_position_embedding_follows_weight_changes():
    trunk = Hiera(embed_dim=16, stages=[1, 1, 1, 1], global_att_blocks=[3], window_spec=[4, 4, 2, 2]).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        first = [t.clone() for t in trunk(x)]
        assert all(torch.equal(a, b) for a, b in zip(first, trunk(x)))  # served from the cache
    with torch.no_grad():
        trunk.pos_embed.add_(1.0)  # in-place edit bumps the version counter
        changed = trunk(x)
    assert not torch.equal(first[0], changed[0])
    trunk.load_state_dict({k: v.clone() for k, v in trunk.state_dict().items()})
    out = trunk(x)  # grad enabled + trainable parameters: no cache, gradients reach pos_embed
    out[-1].sum().backward()
    assert trunk.pos_embed.grad is not None and trunk.pos_embed.grad.abs().sum() > 0
