"""Image-level parity of our SAM2Model with the official SAM2Base (same random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2med.engine import frame_to_tensor
from napari_sam2med.sam2 import build_model, get_config
from napari_sam2med.sam2.model import PointInputs

oracle = pytest.importorskip("oracle", reason="tests/oracle.py helpers")
pytestmark = pytest.mark.oracle

SIZE = 256


@pytest.fixture(scope="module", params=["sam2.1-tiny", "sam2-tiny"])
def pair(request):
    torch.manual_seed(0)
    official = oracle.official_video_predictor(request.param, SIZE)
    oracle.perturb_(official)
    ours = build_model(get_config(request.param, SIZE))
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


@pytest.fixture(scope="module")
def image():
    frame = oracle.blob_stack(1, 96)[0]
    return frame_to_tensor(np.repeat(frame[..., None], 3, -1) / 255.0, SIZE)


def _official_heads(official, image, coords, labels, multimask):
    backbone = official.forward_image(image)
    _, feats, pos, sizes = official._prepare_backbone_features(backbone)
    high = [x.permute(1, 2, 0).view(1, -1, *s) for x, s in zip(feats[:-1], sizes[:-1])]
    pix = official._prepare_memory_conditioned_features(0, True, feats[-1:], pos[-1:], sizes[-1:], {}, 1)
    pts = {"point_coords": coords, "point_labels": labels}
    return official._forward_sam_heads(pix, point_inputs=pts, high_res_features=high, multimask_output=multimask)


PROMPTS = {
    "one_click": ([[90.0, 85.0]], [1], True),
    "two_clicks": ([[90.0, 85.0], [170.0, 150.0]], [1, 0], False),
    "box_and_click": ([[50.0, 40.0], [140.0, 130.0], [90.0, 85.0]], [2, 3, 1], False),
}


@pytest.mark.parametrize("prompt", sorted(PROMPTS))
@torch.inference_mode()
def test_image_level_parity(pair, image, prompt):
    official, ours = pair
    xy, lab, multimask = PROMPTS[prompt]
    coords = torch.tensor([xy], dtype=torch.float32)
    labels = torch.tensor([lab], dtype=torch.int32)
    ref = _official_heads(official, image, coords, labels, multimask)
    feats = ours.encode_image(image)
    pix = ours.condition_on_memory(feats, None)
    got = ours.forward_sam_heads(pix, feats.high_res, PointInputs(coords, labels), None, multimask)
    ref_multi, _, ref_ious, ref_low, ref_high, ref_ptr, ref_score = ref
    multi, ious, low, high, ptr, score = got
    for a, b in ((multi, ref_multi), (ious, ref_ious), (low, ref_low), (ptr, ref_ptr), (score, ref_score)):
        assert a.shape == b.shape
        assert torch.isfinite(a).all()
        assert (a - b).abs().max().item() <= 1e-3
    mask, ref_mask = high > 0, ref_high > 0
    frac = ref_mask.float().mean().item()
    assert 0.01 < frac < 0.99, f"degenerate oracle mask ({frac:.3f}): perturb more"
    iou = (mask & ref_mask).sum() / (mask | ref_mask).sum()
    assert iou.item() >= 0.999


@torch.inference_mode()
def test_track_step_memory_parity(pair, image):
    """A full initial-frame step, memory encoding included, equals the official track_step."""
    official, ours = pair
    coords = torch.tensor([[[90.0, 85.0]]])
    labels = torch.tensor([[1]], dtype=torch.int32)
    backbone = official.forward_image(image)
    _, feats, pos, sizes = official._prepare_backbone_features(backbone)
    ref = official.track_step(0, True, feats, pos, sizes, {"point_coords": coords, "point_labels": labels},
                              None, {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}, 1)
    got = ours.track_step(ours.encode_image(image), memory=None, points=PointInputs(coords, labels))
    assert (got.low_res_masks - ref["pred_masks"]).abs().max() <= 1e-3
    assert (got.obj_ptr - ref["obj_ptr"]).abs().max() <= 1e-3
    assert (got.maskmem_features - ref["maskmem_features"]).abs().max() <= 1e-3


def test_state_dict_keys_identical(pair):
    official, ours = pair
    assert list(official.state_dict()) == list(ours.state_dict()) or set(official.state_dict()) == set(
        ours.state_dict())


@torch.inference_mode()
def test_mask_prompt_parity(pair, image):
    official, ours = pair
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., 60:150, 50:140] = 1
    backbone = official.forward_image(image)
    _, feats, pos, sizes = official._prepare_backbone_features(backbone)
    high = [x.permute(1, 2, 0).view(1, -1, *s) for x, s in zip(feats[:-1], sizes[:-1])]
    pix = feats[-1].permute(1, 2, 0).view(1, -1, *sizes[-1])
    ref = official._use_mask_as_output(pix, high, mask)
    got = ours.mask_as_output(ours.encode_image(image), mask)
    # ours: (multi, ious, low, high, ptr, score); official: (low, high, ious, low, high, ptr, score)
    for a, b in zip(got, (ref[0], ref[2], ref[3], ref[4], ref[5], ref[6])):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= 1e-3
