"""The official sam2 code loads our fine-tuned checkpoint strictly and predicts our masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam2med.engine import Session, frame_to_tensor, run_to_end
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import build_model, get_config
from napari_sam2med.sam2.checkpoint import save_checkpoint
from napari_sam2med.train.config import TrainConfig
from napari_sam2med.train.trainer import train

oracle = pytest.importorskip("oracle")
pytestmark = [pytest.mark.oracle, pytest.mark.slow]

SIZE, N, H = 128, 5, 96
BOX = [52.0, 42.0, 74.0, 66.0]  # row0, col0, row1, col1 around blob 2 of oracle.blob_stack


def test_official_predictor_reproduces_our_finetuned_masks(npz_dir, tmp_path, monkeypatch):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    official = oracle.official_video_predictor("sam2.1-tiny", SIZE)
    official.fill_hole_area = 0
    oracle.perturb_(official, seed=1)
    start = tmp_path / "start.pt"
    save_checkpoint(official.state_dict(), start)
    cfg = TrainConfig(data=[str(npz_dir)], out=str(tmp_path / "run"), val=0, model="sam2.1-tiny",
                      checkpoint=str(start), image_size=SIZE, device="cpu", preset="decoder", frames=2,
                      max_objects=1, steps=2, val_every=0, lr=1e-3, warmup=1, save_every_s=1e9)
    res = run_to_end(train(cfg))
    tuned = torch.load(res.last_path, weights_only=True)["model"]
    changed = [k for k, v in tuned.items() if not torch.equal(v, official.state_dict()[k])]
    assert changed and all(not k.startswith("image_encoder.") for k in changed), "decoder preset trained"
    official.load_state_dict(tuned, strict=True)

    ours = build_model(get_config("sam2.1-tiny", SIZE))
    ours.load_state_dict(tuned, strict=True)
    stack = FrameStack(oracle.blob_stack(N, H))
    images = torch.cat([frame_to_tensor(stack.normalized(i), SIZE) for i in range(N)])
    import sam2.sam2_video_predictor as vp

    monkeypatch.setattr(vp, "load_video_frames", lambda **kw: (images.clone(), H, H))
    attend = official.memory_attention.forward  # the official code's CPU bf16 concat issue (see parity test)
    monkeypatch.setattr(official.memory_attention, "forward",
                        lambda curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0:
                        attend(curr, memory.float(), curr_pos, memory_pos.float(), num_obj_ptr_tokens))
    with torch.inference_mode():
        state = official.init_state("in-memory")
        official.add_new_points_or_box(state, 0, 1, box=[[BOX[1], BOX[0]], [BOX[3], BOX[2]]])
        ref = {f: logits[0, 0] for f, _, logits in official.propagate_in_video(state)}
        s = Session(ours, stack)
        s.set_box(1, 0, BOX)
        got = {}
        for step in s.propagate(direction="forward"):
            got[step.slice_idx] = F.interpolate(step.logits[1], size=(H, H), mode="bilinear",
                                                align_corners=False)[0, 0]
    assert sorted(got) == sorted(ref) == list(range(N))
    for f in ref:
        diff = (got[f] - ref[f]).abs().max().item()
        assert diff <= 1e-3, f"frame {f}: max logit diff {diff}"
        assert torch.equal(got[f] > 0, ref[f] > 0) or ((got[f] > 0) ^ (ref[f] > 0)).float().mean() < 1e-3
    assert np.mean([(ref[f] > 0).float().mean().item() for f in ref]) > 0.0, "degenerate oracle masks"
