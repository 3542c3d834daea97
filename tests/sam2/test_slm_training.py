"""Training the SLM-SAM2 modules alone: gradients reach every new parameter and nothing else changes."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_sam2med.engine.memory import SLMMemoryPolicy
from napari_sam2med.sam2 import build_model, get_config
from napari_sam2med.sam2.slm import SLM_KEY_PREFIXES, attach_slm, freeze_all_but_slm, slm_parameters

oracle = pytest.importorskip("oracle")



@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model(get_config("sam2.1-test", 64))
    oracle.perturb_(m, seed=3)
    return attach_slm(m)  # initialised from the long branch, as from a plain SAM2 checkpoint


def _clip():
    """Four 64 px frames of a moving blob and its masks: (N, 3, S, S) images, (1, N, S, S) masks."""
    frames = torch.from_numpy(oracle.blob_stack(4, 64)).float() / 255.0
    images = frames[:, None].expand(-1, 3, -1, -1).contiguous()
    masks = (frames > 0.7).float()[None]
    return images, masks


def _slm_clip_loss(model, images, masks):
    """SLM-SAM2's recipe through the training engine: one mask-prompted slice, the rest tracked."""
    clip_forward = pytest.importorskip("napari_sam2med.train.clip_forward")
    prompts = clip_forward.ClipPromptConfig(p_mask=1.0, p_box=0.0, p_click=0.0, p_second_cond=0.0,
                                            max_correction_frames=0)
    res = clip_forward.forward_clip(model, images, masks, torch.Generator().manual_seed(0), prompts,
                                    policy=SLMMemoryPolicy())
    return res.loss.total.sum()


def test_every_slm_parameter_gets_a_gradient_and_nothing_else(model):
    params = freeze_all_but_slm(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(SLM_KEY_PREFIXES) for n in names)
    assert len(params) == len(names) == len(slm_parameters(model))
    images, masks = _clip()
    model.eval()  # no dropout: a deterministic check
    _slm_clip_loss(model, images, masks).backward()
    for n, p in model.named_parameters():
        if n in names:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n
            assert p.grad.abs().max() > 0, f"{n} gets a zero gradient"
        else:
            assert p.grad is None, n


def test_training_slm_alone_changes_only_slm_modules(model):
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.AdamW(freeze_all_but_slm(model), lr=1e-3)
    images, masks = _clip()
    model.train()
    for _ in range(2):
        opt.zero_grad()
        _slm_clip_loss(model, images, masks).backward()
        opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed == trainable  # every trainable SLM tensor moved, and nothing else did
    assert not any(k.startswith("rec_maskmem_tpos_enc") for k in changed)
