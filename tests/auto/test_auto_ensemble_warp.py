"""AutoSAM2 (issue 13): prompt-encoder ensembles (save / load / logit averaging) and the warp augmentation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_sam2med.auto.predict import predict_mask, window_logits
from napari_sam2med.auto.prompt_net import (
    PromptEnsemble,
    PromptNet,
    PromptNetConfig,
    load_prompt_net,
    save_prompt_net,
)
from napari_sam2med.auto.sampling import Augment, augment
from napari_sam2med.sam2 import build_model, get_config


@pytest.fixture(scope="module")
def sam2():
    torch.manual_seed(0)
    return build_model(get_config("sam2.1-test", 128)).eval()


def _net(sam2, seed: int, **kw) -> PromptNet:
    torch.manual_seed(seed)
    net = PromptNet(PromptNetConfig.for_model(sam2, input_size=64, width=8, **kw)).eval()
    with torch.no_grad():  # a visible object in the window: push the auxiliary head / decoder off zero
        for p in net.parameters():
            p.mul_(3.0)
    return net


def _frame(size: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (0.2 + 0.6 * (((yy - 48) ** 2 + (xx - 50) ** 2) < 14 ** 2)).astype(np.float32)


def test_ensemble_averages_logits_and_round_trips(sam2, tmp_path):
    a, b = _net(sam2, 1, aux=True, crop_context=2.0), _net(sam2, 2, aux=True, crop_context=2.0)
    img, win = _frame(), (10, 10, 80)
    la, sa = window_logits(sam2, a, img, win)
    lb, sb = window_logits(sam2, b, img, win)
    same, _ = window_logits(sam2, PromptEnsemble([a, copy.deepcopy(a)]), img, win)
    mixed, sm = window_logits(sam2, PromptEnsemble([a, b]), img, win)
    assert torch.allclose(same, la, atol=1e-5)  # two copies of one net = that net
    assert torch.allclose(mixed, (la + lb) / 2, atol=1e-4) and not torch.allclose(mixed, la, atol=1e-2)
    assert sm == pytest.approx((sa + sb) / 2, abs=1e-4)

    ens = PromptEnsemble([a, b])
    path = save_prompt_net(tmp_path / "ens.pt", ens, sam2)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["members"] == 2 and all(v.dtype == torch.float16 for v in blob["prompt_encoder"].values()
                                        if v.is_floating_point())
    loaded, _ = load_prompt_net(path, sam2)  # strict
    assert isinstance(loaded, PromptEnsemble) and len(loaded.members) == 2 and loaded.aux_head is not None
    m0, m1 = predict_mask(sam2, ens, img)[0], predict_mask(sam2, loaded, img)[0]
    assert (m0 != m1).mean() < 0.01  # fp16 storage
    single = save_prompt_net(tmp_path / "one.pt", a, sam2)
    assert isinstance(load_prompt_net(single, sam2)[0], PromptNet)  # single files stay single
    with pytest.raises(ValueError, match="same configuration"):
        PromptEnsemble([a, _net(sam2, 3, aux=True, crop_context=3.0)])


def test_warp_keeps_image_and_mask_aligned():
    size = 160
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - 80) / 22.0) ** 2 + ((xx - 76) / 15.0) ** 2 < 1  # a dark ellipse on a bright textured ground
    rng0 = np.random.default_rng(5)
    image = np.where(mask, 0.05, 0.7 + 0.2 * rng0.random(mask.shape)).astype(np.float32)
    rng = np.random.default_rng(0)
    aug = Augment(warp=True, noise=0.0)
    areas, changed = [], 0
    for _ in range(12):
        img, m = augment(image, mask, rng, aug)
        assert img.shape == image.shape and m.shape == mask.shape and m.dtype == bool
        assert img.min() >= 0 and img.max() <= 1
        inside = img[m]
        assert (inside < 0.3).mean() > 0.9  # the warped mask still covers the (warped) dark object
        assert (img[~m] < 0.3).mean() < 0.02
        areas.append(m.sum() / mask.sum())
        changed += not np.array_equal(m, mask)
    assert changed >= 10 and min(areas) > 0.5 and max(areas) < 1.8
    assert max(areas) / min(areas) > 1.1  # scale really varies
