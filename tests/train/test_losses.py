"""Each SAM2 loss term against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from napari_sam2med.train.losses import LossWeights, dice_loss, focal_loss, iou_loss, object_score_loss, step_loss

LN2 = math.log(2.0)


def test_focal_at_zero_logit():
    # p = 0.5: BCE = ln 2, (1 - p_t)^2 = 1/4; alpha_t = 0.25 for positives, 0.75 for negatives.
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    got = focal_loss(logits, target)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx((0.25 * 0.25 * LN2 + 0.75 * 0.25 * LN2) / 2, rel=1e-6)


def test_focal_confident_pixel():
    # logit 2 on a positive: p = sigmoid(2); BCE = -ln p; (1 - p)^2; alpha 0.25.
    p = 1 / (1 + math.exp(-2.0))
    got = focal_loss(torch.full((1, 1, 1, 1), 2.0), torch.ones(1, 1, 1, 1)).item()
    assert got == pytest.approx(0.25 * (1 - p) ** 2 * -math.log(p), rel=1e-6)


def test_dice_by_hand():
    # p = 0.5 on 4 pixels, 2 of them positive: 1 - (2 * 1 + 1) / (2 + 2 + 1) = 0.4
    got = dice_loss(torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])).item()
    assert got == pytest.approx(0.4, rel=1e-6)


def test_iou_l1_by_hand():
    # prediction {a, b}, truth {a, c}: IoU 1/3; predicted 0.5 -> |0.5 - 1/3| = 1/6
    logits = torch.tensor([[[[5.0, 5.0, -5.0, -5.0]]]])
    target = torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]])
    got = iou_loss(logits, target, torch.tensor([[0.5]])).item()
    assert got == pytest.approx(1 / 6, rel=1e-6)


def test_object_score_by_hand():
    got = object_score_loss(torch.tensor([[0.0], [3.0]]), torch.tensor([True, False]))
    assert got[0].item() == pytest.approx(LN2, rel=1e-6)
    assert got[1].item() == pytest.approx(math.log(1 + math.exp(3.0)), rel=1e-6)


def test_step_loss_best_mask_only_and_weights():
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    good = torch.tensor([[10.0, 10.0], [-10.0, -10.0]])
    multi = torch.stack([torch.zeros(2, 2), good, -good])[None]  # (1, 3, 2, 2): candidate 1 is right
    multi = multi.clone().requires_grad_(True)
    ious = torch.tensor([[0.2, 0.9, 0.1]])
    score = torch.tensor([[0.0]])
    t = step_loss(multi, ious, score, target)
    f1 = focal_loss(multi[:, 1:2], target).item()
    d1 = dice_loss(multi[:, 1:2], target).item()
    assert t.focal.item() == pytest.approx(f1, rel=1e-5)
    assert t.dice.item() == pytest.approx(d1, rel=1e-5)
    assert t.iou.item() == pytest.approx(0.1, abs=1e-6)  # predicted 0.9, actual IoU 1
    assert t.obj_score.item() == pytest.approx(LN2, rel=1e-6)
    assert t.total.item() == pytest.approx(20 * f1 + d1 + 0.1 + LN2, rel=1e-5)
    t.total.backward()
    g = multi.grad.abs().flatten(2).sum(-1)[0]
    assert g[1] > 0 and g[0] == 0 and g[2] == 0, "only the best candidate gets mask gradients"


def test_absent_object_only_scores():
    target = torch.zeros(2, 1, 2, 2)
    target[0, 0, 0, 0] = 1.0  # object 0 present, object 1 absent
    multi = torch.zeros(2, 1, 2, 2, requires_grad=True)
    t = step_loss(multi, torch.zeros(2, 1), torch.zeros(2, 1), target)
    # mask terms of object 1 are zeroed; every term is divided by the 2 objects
    assert t.focal.item() == pytest.approx(focal_loss(multi[:1], target[:1]).item() / 2, rel=1e-6)
    assert t.dice.item() == pytest.approx(dice_loss(multi[:1], target[:1]).item() / 2, rel=1e-6)
    assert t.obj_score.item() == pytest.approx(LN2, rel=1e-6)  # (ln2 + ln2) / 2
    t.total.backward()
    assert multi.grad[1].abs().sum() == 0


def test_weights_are_used():
    target = torch.ones(1, 1, 2, 2)
    multi = torch.zeros(1, 1, 2, 2)
    a = step_loss(multi, torch.zeros(1, 1), torch.zeros(1, 1), target)
    b = step_loss(multi, torch.zeros(1, 1), torch.zeros(1, 1), target, LossWeights(focal=0.0))
    assert a.total.item() - b.total.item() == pytest.approx(20 * a.focal.item(), rel=1e-6)
