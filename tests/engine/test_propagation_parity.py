"""Propagation parity with the official SAM2VideoPredictor, fed the same frames from memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam2med.engine import Session, frame_to_tensor
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import build_model, get_config

oracle = pytest.importorskip("oracle")
pytestmark = pytest.mark.oracle

SIZE, N, H = 128, 8, 96
POS = [[30.0, 33.0], [70.0, 60.0]]  # (row, col): inside blob 1, background
BOX = [52.0, 42.0, 74.0, 66.0]  # row0, col0, row1, col1 around blob 2
FIX = [[38.0, 34.0], [60.0, 20.0]]  # correction on frame 4


def _xy(points):
    return [[c, r] for r, c in points]


@pytest.fixture(scope="module", params=["sam2.1-tiny", "sam2-tiny"])
def setup(request):
    torch.manual_seed(0)
    official = oracle.official_video_predictor(request.param, SIZE)
    official.fill_hole_area = 0
    oracle.perturb_(official, seed=1)
    ours = build_model(get_config(request.param, SIZE))
    ours.load_state_dict(official.state_dict(), strict=True)
    stack = FrameStack(oracle.blob_stack(N, H))
    images = torch.cat([frame_to_tensor(stack.normalized(i), SIZE) for i in range(N)])
    return official, ours, stack, images


def _official_run(official, images, monkeypatch, reverse):
    import sam2.sam2_video_predictor as vp

    monkeypatch.setattr(vp, "load_video_frames", lambda **kw: (images.clone(), H, H))
    # The official code crashes on CPU when a frame's memory holds only bf16 spatial features
    # (no fp32 object pointer promotes the concatenation); cast as that promotion would.
    attend = official.memory_attention.forward

    def attend_fp32(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return attend(curr, memory.float(), curr_pos, memory_pos.float(), num_obj_ptr_tokens)

    monkeypatch.setattr(official.memory_attention, "forward", attend_fp32)
    state = official.init_state("in-memory")
    official.add_new_points_or_box(state, 0, 1, points=_xy(POS), labels=[1, 0])
    official.add_new_points_or_box(state, 0, 2, box=_xy([BOX[:2], BOX[2:]]))
    official.add_new_points_or_box(state, 4, 1, points=_xy(FIX), labels=[1, 0])
    out = {}
    start = 4 if reverse else None  # reverse from the last prompted frame, as our "backward" does
    for f, ids, logits in official.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
        out[f] = {i: logits[k, 0] for k, i in enumerate(ids)}
    return out


def _our_run(ours, stack, direction):
    s = Session(ours, stack)
    s.add_points(1, 0, POS, [1, 0])
    s.set_box(2, 0, BOX)
    s.add_points(1, 4, FIX, [1, 0])
    out, gen = {}, s.propagate(direction=direction)
    for step in gen:
        out[step.slice_idx] = {i: F.interpolate(t, size=(H, H), mode="bilinear", align_corners=False)[0, 0]
                               for i, t in step.logits.items()}
    return out


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@torch.inference_mode()
def test_propagation_matches_official(setup, monkeypatch, reverse):
    official, ours, stack, images = setup
    ref = _official_run(official, images, monkeypatch, reverse)
    got = _our_run(ours, stack, "backward" if reverse else "forward")
    assert sorted(got) == sorted(ref)
    assert len(ref) == (5 if reverse else N)
    fractions = []
    for f in ref:
        for oid in (1, 2):
            a, b = got[f][oid], ref[f][oid]
            assert torch.isfinite(a).all()
            diff = (a - b).abs().max().item()
            assert diff <= 1e-3, f"frame {f} object {oid}: max logit diff {diff}"
            ma, mb = a > 0, b > 0
            union = (ma | mb).sum().item()
            if union:
                assert (ma & mb).sum().item() / union >= 0.999
            fractions.append(mb.float().mean().item())
    assert 0.0 < float(np.mean(fractions)) < 0.9, "degenerate oracle masks"
