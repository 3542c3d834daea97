"""AutoSAM2 (issue 13): multi-channel prompt-encoder input (``PromptNetConfig.input_channels``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2med.auto.channels import check_stack, net_tensor
from napari_sam2med.auto.predict import predict_mask
from napari_sam2med.auto.prompt_net import PromptNet, PromptNetConfig, load_prompt_net, save_prompt_net
from napari_sam2med.auto.training import AutoTrainConfig, train_prompt_net
from napari_sam2med.engine import run_to_end
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import build_model, get_config

FOUR = ("OCTA(ILM_OPL)", "OCTA(FULL)", "OCTA(OPL_BM)", "OCT(ILM_OPL)")


@pytest.fixture(scope="module")
def sam2():
    torch.manual_seed(0)
    return build_model(get_config("sam2.1-test", 128)).eval()


def _frames(n: int = 2, size: int = 96, c: int = 4):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    masks = [((yy - 40 - 5 * i) ** 2 + (xx - 50) ** 2) < 12 ** 2 for i in range(n)]
    frames = [np.clip(0.6 - 0.4 * m[..., None] + rng.normal(0, 0.05, (size, size, c)), 0, 1).astype(np.float32)
              for m in masks]
    return frames, masks


def test_multichannel_shapes_training_and_prediction(sam2):
    torch.set_num_threads(1)
    net = PromptNet(PromptNetConfig.for_model(sam2, input_size=64, width=8, aux=True, crop_context=2.0,
                                              locate_size=64, input_channels=list(FOUR))).eval()
    assert net.config.input_channels == FOUR and net.down[0][0].in_channels == 4
    sparse, dense, aux = net.forward_all(torch.randn(2, 4, 64, 64))
    d, f = sam2.config.d_model, sam2.config.feat_size
    assert sparse.shape == (2, 2, d) and dense.shape == (2, d, f, f) and aux.shape == (2, 1, 16, 16)
    frames, masks = _frames()
    mask, _ = predict_mask(sam2, net, frames[0])
    assert mask.shape == (96, 96) and mask.dtype == bool
    with pytest.raises(ValueError, match=r"needs \(Y, X, 4\) slices"):
        predict_mask(sam2, net, frames[0][..., 0])  # a grey slice cannot feed four channels
    cfg = AutoTrainConfig(steps=2, batch_size=2, input_size=64, width=8, crop_context=2.0, locate_size=64,
                          input_channels=FOUR, seed=0)
    res = run_to_end(train_prompt_net(sam2, frames, masks, cfg))
    assert res.net.config.input_channels == FOUR and len(res.history) == 2
    with pytest.raises(ValueError, match="needs"):
        run_to_end(train_prompt_net(sam2, [fr[..., :3] for fr in frames], masks, cfg))


def test_channel_spec_saved_checked_and_default_unchanged(sam2, tmp_path):
    torch.manual_seed(1)
    net = PromptNet(PromptNetConfig.for_model(sam2, input_size=64, width=8, input_channels=FOUR))
    path = save_prompt_net(tmp_path / "four.pt", net, sam2)
    loaded, _ = load_prompt_net(path, sam2, input_channels=FOUR)
    assert loaded.config == net.config and loaded.config.input_channels == FOUR
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x)[1], net.eval()(x)[1], atol=1e-2)
    with pytest.raises(ValueError, match="takes the input channels"):
        load_prompt_net(path, sam2, input_channels=FOUR[:3])
    with pytest.raises(ValueError, match="takes the input channels"):
        load_prompt_net(path, sam2, input_channels=())  # a caller feeding SAM2's input only
    blob = torch.load(path, weights_only=True)  # a file whose channel spec contradicts its weights
    blob["config"]["input_channels"] = FOUR[:3]
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="first layer does not take the 3"):
        load_prompt_net(tmp_path / "bad.pt", sam2)

    old = PromptNet(PromptNetConfig.for_model(sam2, input_size=64, width=8))  # default: SAM2's own input
    blob = torch.load(save_prompt_net(tmp_path / "one.pt", old, sam2), weights_only=True)
    assert old.down[0][0].in_channels == 3 and tuple(blob["config"]["input_channels"]) == ()
    del blob["config"]["input_channels"]  # a file written before the option existed
    torch.save(blob, tmp_path / "old.pt")
    assert load_prompt_net(tmp_path / "old.pt", sam2, input_channels=())[0].config.input_channels == ()


def test_stack_check():
    grey, rgb = FrameStack(np.zeros((2, 32, 32), np.uint8)), FrameStack(np.zeros((2, 32, 32, 3), np.uint8))
    check_stack((), grey)
    check_stack(FOUR[:3], rgb)
    with pytest.raises(ValueError, match="needs a"):
        check_stack(FOUR[:3], grey)
    with pytest.raises(ValueError, match="first-frame-propagate"):
        check_stack(FOUR[:3], rgb, propagate=True)


def test_second_pass_locator_maps_back_to_slice(sam2):
    from dataclasses import replace

    from napari_sam2med.auto.predict import locate_box

    torch.manual_seed(3)
    net = PromptNet(PromptNetConfig.for_model(sam2, input_size=64, width=8, aux=True, crop_context=2.0,
                                              locate_size=64, tta=1)).eval()
    frame = _frames(1, 64, 1)[0][0][..., 0]
    with torch.no_grad():  # an untrained head is ~constant: amplify its spatial variation around 0
        net.aux_head.weight.mul_(1000)
        net.aux_head.bias.zero_()
        net.aux_head.bias.fill_(-float(net.aux_logits(net_tensor(frame, 64, ()), 64).median()))
    big = np.zeros((96, 96), np.float32)
    big[16:80, 16:80] = frame
    whole = locate_box(net, frame)
    assert whole is not None and locate_box(net, frame, window=(0, 0, 64)) == whole  # same view, same box
    assert locate_box(net, big, window=(16, 16, 64)) == tuple(v + 16 for v in whole)  # back in slice pixels
    net.config = replace(net.config, relocate=2.0)
    mask, _ = predict_mask(sam2, net, frame)
    assert mask.shape == frame.shape


def test_stretch_leaves_sam2_channel_alone():
    from napari_sam2med.auto.channels import prepare

    frame = _frames(1, 64, 3)[0][0] * 0.3 + 0.5  # dim, low-contrast views
    out = prepare(frame, FOUR[:3], stretch=True)
    assert np.array_equal(out[..., 0], frame[..., 0])  # SAM2's channel untouched
    assert out[..., 1:].min() == 0 and out[..., 1:].max() == 1
    assert np.array_equal(prepare(frame, FOUR[:3]), frame)  # off by default


def test_auto_segment_feeds_or_refuses_stacks(sam2):
    from napari_sam2med.auto.infer import auto_segment

    net = PromptNet(PromptNetConfig.for_model(sam2, input_size=64, width=8, aux=True, crop_context=2.0,
                                              locate_size=64, input_channels=FOUR[:3])).eval()
    rgb = (np.random.default_rng(0).random((2, 64, 64, 3)) * 255).astype(np.uint8)
    assert run_to_end(auto_segment(sam2, net, rgb)).shape == (2, 64, 64)
    with pytest.raises(ValueError, match="got 1 channel"):
        run_to_end(auto_segment(sam2, net, rgb[..., 0]))  # a grey stack would feed SAM2's input thrice
    with pytest.raises(ValueError, match="first-frame-propagate"):
        run_to_end(auto_segment(sam2, net, rgb, "first-frame-propagate"))
