"""Every SAM2 parameter gets a gradient through a short clip (timm's all-parameters backward test).

The clip exercises each path the inference and training code take: an initial click frame (no memory), a
mask-prompted conditioning frame (the mask becomes the output), a tracked frame with box + click prompts
and a previous-mask input, and a frame tracked from that memory with a single click (multimask).
"""

from __future__ import annotations

import pytest
import torch

from napari_sam2med.sam2 import build_model, get_config
from napari_sam2med.sam2.model import MemoryContext, PointInputs

oracle = pytest.importorskip("oracle")

#: Parameters the official SAM2 never uses at inference or in training either: with
#: ``directly_add_no_mem_embed`` the first frame adds ``no_mem_embed`` and ignores ``no_mem_pos_enc``.
UNUSED_AS_IN_OFFICIAL = {"no_mem_pos_enc"}


def _points(xy, labels):
    return PointInputs(torch.tensor([xy], dtype=torch.float32), torch.tensor([labels], dtype=torch.int32))


@pytest.mark.parametrize("name", ["sam2.1-test"])
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(get_config(name, 64))
    oracle.perturb_(model, seed=2)  # object present: the mask logits are not gated off
    model.train()
    s = model.image_size
    frames = [model.encode_image(torch.randn(1, 3, s, s)) for _ in range(4)]

    # frame 0: initial click, no memory (no_mem_embed, single-click multimask)
    a = model.track_step(frames[0], memory=None, points=_points([[20.0, 24.0]], [1]))
    # frame 1: mask prompt used as the output (mask_downsample, prompt encoder mask path)
    mask = torch.zeros(1, 1, s, s)
    mask[..., 16:40, 20:44] = 1
    b = model.track_step(frames[1], memory=None, mask=mask)
    cond = MemoryContext(spatial=[(0, a.maskmem_features), (0, b.maskmem_features)],
                         pointers=[(1, a.obj_ptr), (0, b.obj_ptr)], ptr_tpos_max=3)
    # frame 2: tracked, with box corners + clicks and the previous logits (single mask output)
    c = model.track_step(frames[2], memory=cond, points=_points([[18, 20], [44, 46], [30, 30], [5, 5]], [2, 3, 1, 0]),
                         prev_mask_logits=b.low_res_masks)
    # frame 3: tracked from conditioning + recent memory, one click (multimask)
    mem = MemoryContext(spatial=cond.spatial + [(model.config.num_maskmem - 1, c.maskmem_features)],
                        pointers=cond.pointers + [(1, c.obj_ptr)], ptr_tpos_max=3)
    d = model.track_step(frames[3], memory=mem, points=_points([[30.0, 30.0]], [1]))

    loss = sum(out.multimask_logits.mean() + out.high_res_masks.mean() + out.ious.mean() + out.obj_ptr.mean()
               + out.object_score_logits.mean() + out.maskmem_features.mean() for out in (a, b, c, d))
    loss.backward()
    params = dict(model.named_parameters())
    missing = sorted(n for n, p in params.items() if p.requires_grad and p.grad is None)
    assert missing == sorted(UNUSED_AS_IN_OFFICIAL), missing
    nonfinite = sorted(n for n, p in params.items() if p.grad is not None and not torch.isfinite(p.grad).all())
    assert nonfinite == []
    # nearly all gradients are non-zero too (a detach or a constant path would zero a whole module)
    zero = sorted(n for n, p in params.items() if p.grad is not None and not p.grad.abs().sum() > 0)
    assert len(zero) <= 0.02 * len(params), zero
