"""The training loop: loss falls, resume is exact, presets train what they say, exports load strictly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_sam2med.engine import run_to_end
from napari_sam2med.sam2 import build_model, get_config
from napari_sam2med.sam2.build import load_weights
from napari_sam2med.train.clip_forward import ClipPromptConfig, forward_clip
from napari_sam2med.train.config import TrainConfig
from napari_sam2med.train.presets import add_lora, merge_lora, param_groups, select_trainable
from napari_sam2med.train.trainer import export_state_dict, train


def _cfg(npz_dir, out, **kw):
    base = dict(data=[str(npz_dir)], out=str(out), val=1, model="sam2.1-test", random_init=True, image_size=64,
                device="cpu", frames=3, max_objects=2, steps=4, val_every=0, log_every=1, lr=1e-3, warmup=1,
                save_every_s=1e9, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_is_exact(npz_dir, tmp_path):
    torch.set_num_threads(1)
    full = run_to_end(train(_cfg(npz_dir, tmp_path / "a")))
    gen = train(_cfg(npz_dir, tmp_path / "b"))
    for _ in range(2):
        next(gen)
    gen.close()  # a cancel: the state is saved
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert int(state["step"]) == 2
    resumed = run_to_end(train(_cfg(npz_dir, tmp_path / "b")))
    assert resumed.step == full.step == 4
    a = torch.load(full.last_path, weights_only=True)["model"]
    b = torch.load(resumed.last_path, weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    card = json.loads((tmp_path / "a" / "run_card.json").read_text())
    assert card["step"] == 4 and card["val_volumes"] and card["history"]["val_dice"]
    assert (tmp_path / "a" / "run_card.md").read_text().startswith("# Training run")
    # the exported file loads strictly into a fresh model
    load_weights(build_model(get_config("sam2.1-test", 64)), full.best_path)


def test_loss_falls_on_one_clip():
    """A few steps on one fixed clip must fit it (a broken backward or loss cannot)."""
    torch.manual_seed(0)
    model = build_model(get_config("sam2.1-test", 64)).train()
    img = torch.randn(3, 3, 64, 64)
    masks = torch.zeros(1, 3, 64, 64)
    masks[0, :, 20:40, 16:36] = 1
    img[:, :, 20:40, 16:36] += 2.0
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    prompts = ClipPromptConfig(p_mask=0.0, p_box=1.0, p_click=0.0, max_correction_frames=0)
    losses = []
    for i in range(25):
        res = forward_clip(model, img, masks, torch.Generator().manual_seed(i), prompts)
        opt.zero_grad()
        res.loss.total.backward()
        opt.step()
        losses.append(float(res.loss.total.detach()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_forward_uses_corrections_and_memory():
    model = build_model(get_config("sam2.1-test", 64)).train()
    masks = torch.zeros(2, 4, 64, 64)
    masks[0, :, 10:30, 10:30] = 1
    masks[1, :2, 40:50, 40:60] = 1  # absent on frames 2, 3
    prompts = ClipPromptConfig(p_mask=0.0, p_box=1.0, p_click=0.0, max_correction_frames=4,
                               max_correction_points=1, p_second_cond=1.0)
    steps = set()
    for seed in range(6):
        res = forward_clip(model, torch.randn(4, 3, 64, 64), masks, torch.Generator().manual_seed(seed), prompts)
        steps.add(res.n_steps)
        res.loss.total.backward()
    assert max(steps) > 4, "correction clicks add decoder steps"
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("memory_attention.layers.0.cross_attn_image.q_proj.weight", "memory_encoder.out_proj.weight",
                 "image_encoder.trunk.patch_embed.proj.weight", "sam_mask_decoder.iou_token.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def test_presets_select_and_lr_groups():
    model = build_model(get_config("sam2.1-test", 64))
    names = select_trainable(model, "decoder")
    assert not any(n.startswith(("image_encoder.", "sam_prompt_encoder.")) for n in names)
    assert any(n.startswith("memory_attention.") for n in names)
    assert any(n.startswith("sam_mask_decoder.") for n in names)
    select_trainable(model, "full")
    groups = param_groups(model, 1e-3, 0.01, trunk_lr_scale=0.1, layer_decay=0.9)
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    n_blocks = len(model.image_encoder.trunk.blocks)
    assert scale["sam_mask_decoder.iou_token.weight"] == 1.0
    assert scale[f"image_encoder.trunk.blocks.{n_blocks - 1}.attn.qkv.weight"] == pytest.approx(0.1 * 0.9)
    assert scale["image_encoder.trunk.blocks.0.attn.qkv.weight"] == pytest.approx(0.1 * 0.9 ** n_blocks)
    assert scale["image_encoder.trunk.pos_embed"] == pytest.approx(0.1 * 0.9 ** (n_blocks + 1))
    with pytest.raises(ValueError, match="prefixes"):
        select_trainable(model, "custom")
    assert select_trainable(model, "custom", prefixes=["obj_ptr_proj."]) == [
        n for n, _ in model.named_parameters() if n.startswith("obj_ptr_proj.")]


def test_lora_trains_only_adapters_and_merges():
    torch.manual_seed(0)
    model = build_model(get_config("sam2.1-test", 64))
    x = torch.randn(1, 3, 64, 64)
    n = add_lora(model, rank=2)
    assert n == len(model.image_encoder.trunk.blocks)
    names = select_trainable(model, "lora")
    assert names and all(".lora_" in k for k in names)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_b" in name:
                p.normal_(0, 0.1)
        ref = model.encode_image(x).vision
        sd = export_state_dict(model)
    assert not any(".lora_" in k or ".base." in k for k in sd)
    plain = build_model(get_config("sam2.1-test", 64))
    plain.load_state_dict(sd, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(plain.encode_image(x).vision, ref, rtol=1e-4, atol=1e-4)
    merge_lora(model)
    assert sorted(model.state_dict()) == sorted(plain.state_dict())


def test_slm_memory_trains_only_its_modules(npz_dir, tmp_path):
    """``--memory slm`` with the custom preset trains SLM-SAM2's short-term branch and nothing else."""
    torch.set_num_threads(1)
    start = build_model(get_config("sam2.1-test", 64))
    from napari_sam2med.sam2.checkpoint import save_checkpoint

    save_checkpoint(start, tmp_path / "start.pt")
    res = run_to_end(train(_cfg(npz_dir, tmp_path / "slm", random_init=False, checkpoint=str(tmp_path / "start.pt"),
                                memory="slm", preset="custom", trainable=["recent_memory_"], steps=2,
                                frames=4, p_second_cond=0.0)))
    after = torch.load(res.last_path, weights_only=True)["model"]
    before = start.state_dict()
    changed = {k for k in after if k in before and not torch.equal(after[k], before[k])}
    assert not changed, f"frozen weights moved: {sorted(changed)[:3]}"
    slm = [k for k in after if k.startswith("recent_memory_")]
    assert slm, "the checkpoint holds the SLM modules"
    # the short branch starts as a copy of the long one (sam2/slm.py) and was trained away from it
    moved = [k for k in slm if k.startswith("recent_memory_attention.")
             and not torch.equal(after[k], after[k.replace("recent_memory_attention.", "memory_attention.")])]
    assert moved, "the SLM modules did not train"
    model = res.model
    assert all(p.requires_grad == n.startswith("recent_memory_") for n, p in model.named_parameters())


def test_activation_checkpointing_gives_the_same_gradients():
    from napari_sam2med.train.presets import enable_activation_checkpointing

    torch.manual_seed(0)
    a = build_model(get_config("sam2.1-test", 64)).train()
    b = build_model(get_config("sam2.1-test", 64)).train()
    b.load_state_dict(a.state_dict())
    assert enable_activation_checkpointing(b) == len(b.image_encoder.trunk.blocks)
    img, masks = torch.randn(2, 3, 64, 64), torch.zeros(1, 2, 64, 64)
    masks[0, :, 10:30, 12:40] = 1
    prompts = ClipPromptConfig(p_mask=0.0, p_box=1.0, p_click=0.0, max_correction_frames=0)
    for m in (a, b):
        torch.manual_seed(1)
        forward_clip(m, img, masks, torch.Generator().manual_seed(0), prompts).loss.total.backward()
    ga = a.image_encoder.trunk.blocks[0].attn.qkv.weight.grad
    gb = b.image_encoder.trunk.blocks[0].attn.qkv.weight.grad
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)
