"""Behaviour of Session / propagate on a small random-init model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2med.engine import PromptSet, Session, run_to_end, write_slice
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import build_model, get_config

oracle = pytest.importorskip("oracle")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(get_config("sam2.1-test", 64))
    oracle.perturb_(m, seed=3)
    return m


@pytest.fixture
def stack():
    return FrameStack(oracle.blob_stack(12, 48))


def test_segment_slice_uses_cached_embedding(model, stack):
    s = Session(model, stack, cache_size=4)
    s.add_points(1, 3, [[17, 17]], [1])
    r1 = s.segment_slice(3)
    assert set(r1.masks) == {1} and r1.masks[1].shape == (48, 48) and r1.masks[1].dtype == bool
    assert s.features.misses == 1
    s.add_points(1, 3, [[40, 40]], [0])
    s.segment_slice(3)
    assert s.features.misses == 1 and s.features.hits >= 1  # second click: decoder only


def test_feature_cache_is_bounded(model, stack):
    s = Session(model, stack, cache_size=3)
    s.add_points(1, 0, [[17, 17]], [1])
    run_to_end(s.propagate("forward"))
    assert len(s.features) <= s.features.capacity == max(3, s.encode_batch + 1)


@pytest.mark.parametrize("bad", [
    dict(points=[[100, 5]], labels=[1]),       # outside the slice
    dict(points=[[5, 5]], labels=[2]),         # bad label
    dict(points=[], labels=[]),                # empty
    dict(points=[[np.nan, 3]], labels=[1]),    # NaN
])
def test_bad_points_rejected(model, stack, bad):
    s = Session(model, stack)
    with pytest.raises(ValueError):
        s.add_points(1, 0, bad["points"], bad["labels"])
    assert len(s.prompts) == 0


def test_bad_requests(model, stack):
    s = Session(model, stack)
    with pytest.raises(ValueError, match="no prompts"):
        run_to_end(s.propagate())
    with pytest.raises(ValueError, match="no prompts"):
        s.segment_slice(0)
    with pytest.raises(ValueError):
        s.add_points(1, 99, [[3, 3]], [1])
    with pytest.raises(ValueError):
        s.set_box(1, 0, [5, 5, 5, 9])
    with pytest.raises(ValueError):
        s.add_points(0, 0, [[3, 3]], [1])
    s.add_points(1, 0, [[3, 3]], [1])
    with pytest.raises(ValueError, match="direction"):
        next(s.propagate("sideways"))


def test_both_directions_and_range(model, stack):
    s = Session(model, stack)
    s.add_points(1, 5, [[17, 17]], [1])
    steps = list(s.propagate("both"))
    assert sorted(st.slice_idx for st in steps) == list(range(12))
    assert [st.slice_idx for st in steps][:7] == list(range(5, 12))
    assert steps[-1].done == steps[-1].total == 12
    s2 = Session(model, stack)
    s2.add_points(1, 5, [[17, 17]], [1])
    visited = [st.slice_idx for st in s2.propagate("both", start=3, stop=8)]
    assert sorted(visited) == [3, 4, 5, 6, 7]
    assert [st.slice_idx for st in Session_with(model, stack).propagate("backward")] == [5, 4, 3, 2, 1, 0]


def Session_with(model, stack):
    s = Session(model, stack)
    s.add_points(1, 5, [[17, 17]], [1])
    return s


def test_several_objects_share_one_encoding_per_slice(model, stack):
    s = Session(model, stack, cache_size=2)
    s.add_points(1, 0, [[17, 17]], [1])
    s.set_box(2, 0, [25, 20, 37, 34])
    s.add_points(3, 0, [[5, 40]], [1])
    labels = run_to_end(s.propagate("forward"))
    assert s.features.encoded == 12  # one encoding per slice for three objects
    assert labels.shape == (12, 48, 48) and labels.dtype == np.int32
    assert set(np.unique(labels)) <= {0, 1, 2, 3}


@pytest.mark.parametrize("memory", ["sam2", "slm"])
def test_memory_bank_is_bounded(model, memory):
    """Recent memory never exceeds the policy horizon, whatever the stack length (SAM2's and SLM's memory)."""
    import copy

    from napari_sam2med.engine import propagation

    if memory == "slm":
        model = copy.deepcopy(model)  # SLM adds modules to the model: keep the shared fixture plain

    sizes = []
    orig = propagation._track_frame

    def spy(session, frame, banks, reverse):
        out = orig(session, frame, banks, reverse)
        sizes.append(max(len(b.recent) for b in banks.values()))
        return out

    long_stack = FrameStack(np.repeat(oracle.blob_stack(4, 32), 10, axis=0))  # 40 slices
    s = Session(model, long_stack, cache_size=2, encode_batch=3, memory=memory)
    s.add_points(1, 0, [[11, 11]], [1])
    propagation._track_frame = spy
    try:
        run_to_end(s.propagate("forward"))
    finally:
        propagation._track_frame = orig
    cfg = model.config
    assert max(sizes) <= max(cfg.num_maskmem, cfg.max_obj_ptrs_in_encoder)
    assert len(sizes) == 40


def test_cancel_leaves_whole_slices(model, stack):
    s = Session(model, stack)
    s.add_points(1, 0, [[17, 17]], [1])
    out = np.full((12, 48, 48), 0, np.int32)
    gen = s.propagate("forward", out=out)
    reference = run_to_end(Session_with_points(model, stack).propagate("forward"))
    for _ in range(4):
        next(gen)
    gen.close()
    np.testing.assert_array_equal(out[:4], reference[:4])
    assert not out[4:].any()


def Session_with_points(model, stack):
    s = Session(model, stack)
    s.add_points(1, 0, [[17, 17]], [1])
    return s


def test_propagation_keeps_other_labels(model, stack):
    s = Session(model, stack)
    s.add_points(2, 0, [[17, 17]], [1])
    out = np.zeros((12, 48, 48), np.int32)
    out[:, :4, :4] = 7  # a user's label elsewhere
    out[:, 17, 17] = 9  # and one under the propagated object
    run_to_end(s.propagate("forward", out=out))
    assert (out[:, :4, :4] == 7).all()
    assert (out[:, 17, 17] == 9).all()


def test_exclusive_masks_larger_logit_wins():
    from napari_sam2med.engine import exclusive_masks

    a = np.array([[1, 1], [0, 0]], bool)
    b = np.array([[1, 0], [1, 0]], bool)
    la = np.array([[2.0, 1.0], [0, 0]])
    lb = np.array([[3.0, 0], [1.0, 0]])
    got = exclusive_masks({1: a, 2: b}, {1: la, 2: lb})
    out = np.zeros((1, 2, 2), np.int32)
    write_slice(out, 0, got)
    np.testing.assert_array_equal(out[0], [[2, 1], [2, 0]])


def test_correction_changes_repropagation(model, stack):
    """A negative click on a propagated slice becomes a conditioning slice and changes what follows."""
    s = Session(model, stack)
    s.add_points(1, 0, [[17, 17], [40, 40]], [1, 0])
    first = run_to_end(s.propagate("forward")).copy()
    assert first[4].any()
    rows, cols = np.nonzero(first[4] == 1)
    click = [[rows[len(rows) // 2], cols[len(cols) // 2]]]
    s.add_points(1, 4, click, [0])
    corrected = s.segment_slice(4).masks[1]
    second = run_to_end(s.propagate("forward"))
    np.testing.assert_array_equal(second[0], first[0])  # the original prompt slice is unchanged
    np.testing.assert_array_equal(second[4] == 1, corrected)  # the correction is kept, not overwritten
    assert any((second[z] != first[z]).any() for z in range(5, 12)), "correction did not reach later slices"


def test_prompt_json_round_trip():
    p = PromptSet.from_json({"prompts": [
        {"object": 1, "slice": 0, "points": [[3, 4], [5, 6]], "labels": [1, 0]},
        {"object": 2, "slice": 0, "box": [1, 1, 10, 12]},
        {"object": 1, "slice": 4, "points": [[7, 7]], "labels": [0]},
    ]}, 8, (20, 20))
    assert p.object_ids == [1, 2] and p.slices(1) == [0, 4]
    again = PromptSet.from_json(p.to_json(), 8, (20, 20))
    assert again.to_json() == p.to_json()
    for bad in ({}, {"prompts": [{"object": 1}]}, {"prompts": [{"object": 1, "slice": 9, "points": [[1, 1]]}]},
                {"prompts": []}, {"prompts": [{"object": "a", "slice": 0, "points": [[1, 1]]}]}):
        with pytest.raises(ValueError):
            PromptSet.from_json(bad, 8, (20, 20))


def test_custom_memory_policy_is_used(model, stack):
    """A policy that keeps only the conditioning slices changes the result and stores nothing recent."""
    from napari_sam2med.engine import SAM2MemoryPolicy
    from napari_sam2med.sam2.model import MemoryContext

    class CondOnly(SAM2MemoryPolicy):
        calls = 0

        def select(self, frame, bank, *, reverse, num_frames, config):
            CondOnly.calls += 1
            ctx = super().select(frame, bank, reverse=reverse, num_frames=num_frames, config=config)
            return MemoryContext(spatial=[(t, f) for t, f in ctx.spatial if t == 0],
                                 pointers=ctx.pointers[:1], ptr_tpos_max=ctx.ptr_tpos_max)

        def evict(self, frame, bank, *, reverse, config):
            bank.recent.clear()

    default = Session(model, stack)
    custom = Session(model, stack, memory_policy=CondOnly())
    for s in (default, custom):
        s.add_points(1, 0, [[17, 17]], [1])
    a = run_to_end(default.propagate("forward"))
    b = run_to_end(custom.propagate("forward"))
    assert CondOnly.calls == 11
    np.testing.assert_array_equal(a[0], b[0])
    assert any((a[z] != b[z]).any() for z in range(2, 12))


def _labels(model, data, window=None):
    s = Session(model, FrameStack(data, window=window))
    s.add_points(1, 2, [[14, 14]], [1])
    s.add_points(2, 2, [[26, 25]], [1])
    return run_to_end(s.propagate("both"))


@pytest.fixture(scope="module")
def numpy_labels(model):
    """The reference: the plain uint8 numpy stack."""
    labels = _labels(model, oracle.blob_stack(5, 40))
    assert set(np.unique(labels)) == {0, 1, 2}  # both objects found: the comparisons below are not trivial
    return labels


@pytest.mark.parametrize("kind", ["rgb_video", "uint16", "float32", "zarr", "dask"])
def test_stack_kinds(model, numpy_labels, kind, tmp_path):
    """Every kind of stack holding the same image gives exactly the numpy result."""
    base = oracle.blob_stack(5, 40)
    window = None
    if kind == "rgb_video":
        data = np.stack([base, base, base], axis=-1)  # (T, Y, X, 3), grey in RGB
    elif kind == "uint16":  # the window maps to 0..1 like x/255 on the uint8 original
        data, window = base.astype(np.uint16) * 200, (0, 51000)
    elif kind == "float32":
        data, window = base.astype(np.float32) / 7.0, (0.0, 255.0 / 7.0)
    elif kind == "zarr":
        import zarr

        data = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=base.shape, chunks=(1, 40, 40), dtype="uint8")
        data[:] = base
    else:
        import dask.array as da

        data = da.from_array(base, chunks=(1, 40, 40))
    np.testing.assert_array_equal(_labels(model, data, window), numpy_labels)
