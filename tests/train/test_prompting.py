"""Prompts simulated from ground truth: boxes, clicks, correction clicks."""

from __future__ import annotations

import torch

from napari_sam2med.train.prompting import PromptKind, box_points, click_points, correction_points, pick_kind


def _mask():
    m = torch.zeros(2, 1, 32, 32)
    m[0, 0, 4:10, 6:20] = 1
    m[1, 0, 20:30, 2:5] = 1
    return m


def test_box_is_the_bbox_without_noise_and_near_it_with():
    m = _mask()
    p = box_points(m, torch.Generator().manual_seed(0), noise=0.0)
    assert p.labels.tolist() == [[2, 3], [2, 3]]
    assert p.coords[0].tolist() == [[6.0, 4.0], [19.0, 9.0]]  # (x, y) corners, inclusive pixel indices
    noisy = box_points(m, torch.Generator().manual_seed(1), noise=0.1)
    assert (noisy.coords - p.coords).abs().max() <= 0.1 * 13 + 1e-5
    assert not torch.equal(noisy.coords, p.coords)


def test_click_inside_object():
    m = _mask()
    for seed in range(5):
        p = click_points(m, torch.Generator().manual_seed(seed))
        x, y = p.coords[:, 0, 0].long(), p.coords[:, 0, 1].long()
        assert m[torch.arange(2), 0, y, x].eq(1).all()
        assert p.labels.eq(1).all()


def test_correction_click_sign_follows_the_error():
    m = _mask()
    pred = torch.full_like(m, -5.0)
    pred[1] = 5.0  # object 0: everything missed -> positive click in it; object 1: all over -> negative outside
    pred[1, 0, 20:30, 2:5] = 5.0
    for seed in range(5):
        p = correction_points(pred, m, torch.Generator().manual_seed(seed))
        x, y = p.coords[:, 0, 0].long(), p.coords[:, 0, 1].long()
        assert p.labels[0, 0] == 1 and m[0, 0, y[0], x[0]] == 1
        assert p.labels[1, 0] == 0 and m[1, 0, y[1], x[1]] == 0


def test_pick_kind_respects_probabilities():
    g = torch.Generator().manual_seed(0)
    kinds = [pick_kind({PromptKind.BOX: 1.0, PromptKind.MASK: 0.0, PromptKind.CLICK: 0.0}, g) for _ in range(20)]
    assert set(kinds) == {PromptKind.BOX}
