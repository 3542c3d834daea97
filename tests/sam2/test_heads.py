"""Parity of our prompt encoder, two-way transformer and mask decoder with official SAM2."""

import pytest
import torch

official_prompt = pytest.importorskip("sam2.modeling.sam.prompt_encoder")
official_decoder = pytest.importorskip("sam2.modeling.sam.mask_decoder")
official_transformer = pytest.importorskip("sam2.modeling.sam.transformer")

from napari_sam2med.sam2.mask_decoder import MaskDecoder  # noqa: E402
from napari_sam2med.sam2.prompt_encoder import PromptEncoder  # noqa: E402
from napari_sam2med.sam2.transformer import TwoWayTransformer  # noqa: E402
from oracle import max_abs_diff, mirrored, perturbed  # noqa: E402  (tests/oracle.py)

EMBED = 256
IMAGE = 256
GRID = IMAGE // 16


@pytest.fixture(scope="module")
def prompt_encoders():
    torch.manual_seed(0)
    off = perturbed(official_prompt.PromptEncoder(EMBED, (GRID, GRID), (IMAGE, IMAGE), 16), 1)
    ours = mirrored(off, PromptEncoder(EMBED, (GRID, GRID), (IMAGE, IMAGE), 16))
    return off, ours


def _prompts():
    gen = torch.Generator().manual_seed(3)
    coords = torch.rand(2, 3, 2, generator=gen) * IMAGE
    labels = torch.tensor([[1, 0, -1], [1, 1, 0]], dtype=torch.int32)
    boxes = torch.tensor([[10.0, 20.0, 200.0, 150.0], [0.0, 0.0, 255.0, 255.0]])
    masks = torch.randn(2, 1, 4 * GRID, 4 * GRID, generator=gen)
    return coords, labels, boxes, masks


@pytest.mark.parametrize("kind", ["points", "box_points", "box", "mask", "none"])
def test_prompt_encoder_matches_official(prompt_encoders, kind):
    off, ours = prompt_encoders
    coords, labels, boxes, masks = _prompts()
    args = {
        "points": ((coords, labels), None, None),
        "box_points": ((coords, labels), boxes, None),
        "box": (None, boxes, None),
        "mask": ((coords, labels), None, masks),
        "none": (None, None, None),
    }[kind]
    with torch.no_grad():
        s_off, d_off = off(*args)
        s_ours, d_ours = ours(*args)
    assert s_ours.shape == s_off.shape
    assert d_ours.shape == d_off.shape
    if s_off.numel():
        assert s_off.abs().max() > 0.1
    assert max_abs_diff(s_ours, s_off) <= 1e-5
    assert max_abs_diff(d_ours, d_off) <= 1e-5
    assert max_abs_diff(ours.get_dense_pe(), off.get_dense_pe()) <= 1e-5
    assert ours.mask_input_size == off.mask_input_size == (4 * GRID, 4 * GRID)


def test_point_labels_select_embeddings(prompt_encoders):
    _, ours = prompt_encoders
    coords = torch.full((1, 4, 2), 100.0)
    labels = torch.tensor([[0, 1, 2, -1]])
    with torch.no_grad():
        sparse, _ = ours((coords, labels), None, None)
    # Padding tokens carry only the not-a-point embedding, no position.
    assert torch.allclose(sparse[0, 3], ours.not_a_point_embed.weight[0])
    assert torch.allclose(sparse[0, 4], ours.not_a_point_embed.weight[0])
    # Same position, different labels: differences are the label embeddings.
    diff = sparse[0, 1] - sparse[0, 0]
    expected = ours.point_embeddings[1].weight[0] - ours.point_embeddings[0].weight[0]
    assert torch.allclose(diff, expected, atol=1e-5)


def _transformer_pair(seed=0):
    torch.manual_seed(seed)
    off = perturbed(official_transformer.TwoWayTransformer(2, EMBED, 8, 512), seed + 1)
    return off, mirrored(off, TwoWayTransformer(2, EMBED, 8, 512))


def test_two_way_transformer_matches_official():
    off, ours = _transformer_pair()
    gen = torch.Generator().manual_seed(5)
    img = torch.randn(2, EMBED, 8, 8, generator=gen)
    pe = torch.randn(2, EMBED, 8, 8, generator=gen)
    tokens = torch.randn(2, 7, EMBED, generator=gen)
    with torch.no_grad():
        q_off, k_off = off(img, pe, tokens)
        q_ours, k_ours = ours(img, pe, tokens)
    assert q_ours.shape == (2, 7, EMBED) and k_ours.shape == (2, 64, EMBED)
    assert max_abs_diff(q_ours, q_off) <= 1e-5
    assert max_abs_diff(k_ours, k_off) <= 1e-5


DECODER_KW = dict(
    num_multimask_outputs=3,
    iou_head_depth=3,
    iou_head_hidden_dim=256,
    use_high_res_features=True,
    iou_prediction_use_sigmoid=True,
    dynamic_multimask_via_stability=True,
    dynamic_multimask_stability_delta=0.05,
    dynamic_multimask_stability_thresh=0.98,
    pred_obj_scores=True,
    pred_obj_scores_mlp=True,
    use_multimask_token_for_obj_ptr=True,
)


@pytest.fixture(scope="module")
def decoders():
    torch.manual_seed(0)
    t_off = official_transformer.TwoWayTransformer(2, EMBED, 8, 2048)
    off = perturbed(official_decoder.MaskDecoder(transformer_dim=EMBED, transformer=t_off, **DECODER_KW), 2)
    ours = MaskDecoder(transformer_dim=EMBED, transformer=TwoWayTransformer(2, EMBED, 8, 2048), **DECODER_KW)
    return off, mirrored(off, ours)


def _decoder_inputs(batch=2):
    gen = torch.Generator().manual_seed(7)
    img = torch.randn(1, EMBED, GRID, GRID, generator=gen)
    pe = torch.randn(1, EMBED, GRID, GRID, generator=gen)
    sparse = torch.randn(batch, 3, EMBED, generator=gen)
    dense = torch.randn(batch, EMBED, GRID, GRID, generator=gen)
    s0 = torch.randn(1, EMBED // 8, 4 * GRID, 4 * GRID, generator=gen)
    s1 = torch.randn(1, EMBED // 4, 2 * GRID, 2 * GRID, generator=gen)
    return img, pe, sparse, dense, [s0, s1]


@pytest.mark.parametrize("multimask", [True, False])
def test_mask_decoder_matches_official(decoders, multimask):
    off, ours = decoders
    img, pe, sparse, dense, high_res = _decoder_inputs()
    high_res = [f.expand(2, -1, -1, -1) for f in high_res]
    with torch.no_grad():
        out_off = off(img, pe, sparse, dense, multimask, True, high_res)
        out_ours = ours(img, pe, sparse, dense, multimask, True, high_res)
    n_masks = 3 if multimask else 1
    assert out_ours[0].shape == (2, n_masks, 4 * GRID, 4 * GRID)
    assert out_ours[1].shape == (2, n_masks)
    assert out_ours[2].shape == (2, n_masks, EMBED)
    assert out_ours[3].shape == (2, 1)
    assert out_off[0].std() > 1e-3
    for a, b in zip(out_ours, out_off):
        assert max_abs_diff(a, b) <= 1e-4 * max(1.0, b.abs().max().item())


def test_dynamic_multimask_selection_matches_official(decoders):
    off, ours = decoders
    gen = torch.Generator().manual_seed(11)
    logits = torch.randn(3, 4, 16, 16, generator=gen)
    logits[0, 0] = torch.where(logits[0, 0] > 0, 5.0, -5.0)  # stable single mask
    logits[2, 0] = 0.0  # empty union -> stability 1
    ious = torch.rand(3, 4, generator=gen)
    m_off, i_off = off._dynamic_multimask_via_stability(logits, ious)
    m_ours, i_ours = ours._dynamic_multimask_via_stability(logits, ious)
    assert torch.equal(m_ours, m_off) and torch.equal(i_ours, i_off)
    assert torch.equal(m_ours[0], logits[0, 0:1])  # kept the stable single mask
    best = ious[1, 1:].argmax() + 1
    assert torch.equal(m_ours[1], logits[1, best : best + 1])  # unstable -> best multimask


def test_mask_decoder_requires_high_res_features(decoders):
    _, ours = decoders
    img, pe, sparse, dense, _ = _decoder_inputs(batch=1)
    with pytest.raises(ValueError, match="high_res_features"):
        ours(img, pe, sparse, dense, True, True, None)
