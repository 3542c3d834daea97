"""SLM-SAM2 short-long memory in the engine: what the short branch sees, bounded memory, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2med.engine import MemoryKind, Session, SLMMemoryPolicy, make_policy, run_to_end
from napari_sam2med.engine.memory import SAM2MemoryPolicy
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import SLMConfig, build_model, get_config
from napari_sam2med.sam2.slm import attach_slm

oracle = pytest.importorskip("oracle")



@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(get_config("sam2.1-test", 64))
    oracle.perturb_(m, seed=3)
    return attach_slm(m, SLMConfig(short_init_scale=1.0))  # the short branch fully active


def test_memory_kind_and_policy_choice():
    assert MemoryKind.parse("slm") is MemoryKind.SLM and MemoryKind.parse(MemoryKind.SAM2) is MemoryKind.SAM2
    assert isinstance(make_policy("slm"), SLMMemoryPolicy) and type(make_policy("sam2")) is SAM2MemoryPolicy
    with pytest.raises(ValueError, match="sam2, slm"):
        MemoryKind.parse("long")
    with pytest.raises(ValueError):
        SLMMemoryPolicy(recent_n=0)


@pytest.mark.parametrize("recent_n", [1, 2])
def test_short_branch_sees_only_recent_n_slices(model, recent_n):
    """Spy on the policy and on the short memory attention: only the last ``recent_n`` slices."""
    cfg = model.config
    seen, tokens = [], []

    class Spy(SLMMemoryPolicy):
        def select_recent(self, frame, bank, *, reverse, num_frames, config):
            ctx = super().select_recent(frame, bank, reverse=reverse, num_frames=num_frames, config=config)
            step = 1 if reverse else -1
            stored = {t: e for t, e in {**bank.cond, **bank.recent}.items()}
            for t_pos, feat in ctx.spatial:
                d = cfg.num_maskmem - t_pos
                assert feat is stored[frame + step * d].features  # the slice d steps back, no other
            seen.append((frame, [cfg.num_maskmem - t for t, _ in ctx.spatial], [d for d, _ in ctx.pointers]))
            return ctx

    hook = model.recent_memory_attention.register_forward_hook(
        lambda mod, args, kwargs, out: tokens.append(kwargs["memory"].shape[0]), with_kwargs=True)
    try:
        s = Session(model, FrameStack(oracle.blob_stack(10, 48)), memory_policy=Spy(recent_n=recent_n),
                    memory="slm")
        s.add_points(1, 4, [[17, 17]], [1])
        run_to_end(s.propagate("both"))
    finally:
        hook.remove()
    assert len(seen) == 9 and len(tokens) == 9
    hw = cfg.feat_size ** 2
    ptr_tokens = cfg.d_model // cfg.mem_dim
    for (frame, spatial_d, ptr_d), n_tok in zip(seen, tokens):
        # The slices just before this one in the pass, the prompted slice only when it is among them.
        avail = min(recent_n, abs(frame - 4))
        assert spatial_d == list(range(avail, 0, -1)) and ptr_d == list(range(1, avail + 1))
        assert n_tok == avail * (hw + ptr_tokens)


def test_slm_memory_is_bounded_over_a_long_stack(model):
    """60 slices: the recent bank stays within the horizon and the short context at recent_n."""
    from napari_sam2med.engine import propagation

    sizes, short = [], []
    orig = propagation._track_frame

    def spy(session, frame, banks, reverse):
        out = orig(session, frame, banks, reverse)
        bank = banks[1]
        sizes.append(len(bank.recent))
        ctx = session.policy.select(frame + 1, bank, reverse=reverse, num_frames=session.num_slices,
                                    config=session.model.config)
        short.append(0 if ctx.recent is None else len(ctx.recent.spatial) + len(ctx.recent.pointers))
        return out

    long_stack = FrameStack(np.repeat(oracle.blob_stack(4, 32), 15, axis=0))  # 60 slices
    s = Session(model, long_stack, cache_size=2, encode_batch=3, memory="slm")
    s.add_points(1, 0, [[11, 11]], [1])
    propagation._track_frame = spy
    try:
        labels = run_to_end(s.propagate("forward"))
    finally:
        propagation._track_frame = orig
    cfg = model.config
    assert len(sizes) == 60 and labels.shape == (60, 32, 32)
    assert max(sizes) <= max(cfg.num_maskmem, cfg.max_obj_ptrs_in_encoder)
    assert sizes[-1] == sizes[30]  # constant once the window is full
    assert set(short[1:]) == {2 * cfg.slm.recent_n}  # one memory + one pointer, whatever the length


def test_objects_batched_with_slm_equal_separate_runs(model):
    """Objects sharing a batch (short contexts merged) get the logits they get alone."""
    stack = FrameStack(oracle.blob_stack(8, 48))

    def logits(objs):
        s = Session(model, stack, memory="slm")
        for oid, pt in objs.items():
            s.add_points(oid, 2, [pt], [1])
        return {(st.slice_idx, o): lg for st in s.propagate("forward") for o, lg in st.logits.items()}

    both = logits({1: [17, 17], 2: [31, 29]})
    alone = {**logits({1: [17, 17]}), **logits({2: [31, 29]})}
    assert both.keys() == alone.keys()
    for k in both:
        torch.testing.assert_close(both[k], alone[k], rtol=1e-4, atol=1e-4)


def test_set_memory_switches_an_existing_session(model):
    """The widget switches memory on a live session: results equal a fresh session's."""
    stack = FrameStack(oracle.blob_stack(8, 48))

    def run(s):
        s.add_points(1, 2, [[17, 17]], [1], clear=True)
        return {st.slice_idx: st.logits[1] for st in s.propagate("both")}

    fresh_slm, fresh_sam2 = run(Session(model, stack, memory="slm")), run(Session(model, stack))
    s = Session(model, stack)
    run(s)
    s.set_memory("slm")
    assert s.memory is MemoryKind.SLM and isinstance(s.policy, SLMMemoryPolicy)
    switched = run(s)
    s.set_memory(MemoryKind.SAM2)
    back = run(s)
    for z in fresh_slm:
        torch.testing.assert_close(switched[z], fresh_slm[z])
        torch.testing.assert_close(back[z], fresh_sam2[z])
    assert any(not torch.allclose(fresh_slm[z], fresh_sam2[z]) for z in fresh_slm)
