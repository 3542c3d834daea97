"""Embedding cache: byte budget, disk tier (round trip, reopen, corrupt / changed data), precompute order and pause."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from napari_sam2med.engine import Session, run_to_end
from napari_sam2med.engine.embedding_cache import EmbeddingCache, attach_cache, features_nbytes
from napari_sam2med.engine.embedding_store import EmbeddingStore
from napari_sam2med.engine.precompute import outward_order, precompute
from napari_sam2med.sam2 import build_model, get_config
from napari_sam2med.sam2.model import FrameFeatures

oracle = pytest.importorskip("oracle")


def _fake(idx: int) -> FrameFeatures:
    t = lambda c, s: torch.full((1, c, s, s), float(idx))  # noqa: E731
    return FrameFeatures(t(8, 4), t(8, 4), (t(2, 16), t(4, 8)))  # 256 + 256 + 512 + 256 floats = 5120 B


ENTRY = features_nbytes(_fake(0))


class Counting:
    """A compute function that records the slices it encodes."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[int] = []
        self.delay = delay

    def __call__(self, idxs):
        time.sleep(self.delay)
        self.calls += list(idxs)
        return [_fake(i) for i in idxs]


def test_byte_budget_and_lru_eviction():
    enc = Counting()
    cache = EmbeddingCache(enc, budget_bytes=3 * ENTRY, min_entries=1)
    for i in range(5):
        cache.get(i)
    assert cache.cached() == [2, 3, 4] and cache.nbytes <= 3 * ENTRY and cache.capacity == 3
    cache.get(2)  # a hit makes 2 the most recent: 3 goes next
    cache.get(7)
    assert cache.cached() == [4, 2, 7] and enc.calls == [0, 1, 2, 3, 4, 7]
    assert float(cache.get(4).vision[0, 0, 0, 0]) == 4.0 and cache.hits == 2
    cache.set_budget(ENTRY)  # a smaller budget evicts at once
    assert cache.cached() == [4]
    floor = EmbeddingCache(Counting(), budget_bytes=1, min_entries=2)  # the floor wins over the budget
    floor.get(0), floor.get(1), floor.get(2)
    assert len(floor) == 2


def test_a_slice_in_flight_is_computed_once():
    enc = Counting(delay=0.2)
    cache = EmbeddingCache(enc, budget_bytes=10 * ENTRY)
    worker = threading.Thread(target=cache.ensure, args=(3,))
    worker.start()
    time.sleep(0.05)
    f = cache.get(3)  # waits for the background encode instead of encoding again
    worker.join()
    assert enc.calls == [3] and float(f.vision.flatten()[0]) == 3.0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(get_config("sam2.1-test", 64))
    oracle.perturb_(m, seed=3)
    return m


def _session(model, data, store, budget_mb=64):
    s = Session(model, data)
    calls = []
    encode = s._encode
    s._encode = lambda idxs: (calls.extend(idxs), encode(idxs))[1]
    attach_cache(s, budget_mb, store)
    return s, calls


def _finishes(fn, timeout=20.0) -> bool:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


@pytest.mark.parametrize("built", [False, True])
def test_a_click_holding_the_session_lock_never_deadlocks_with_the_precompute(model, built):
    s, calls = _session(model, oracle.blob_stack(4, 48), None)
    if built:  # a first slice built the encoder (and used the cache's preparation)
        s.features.get(0)
    background = threading.Thread(target=s.features.ensure, args=(2,), daemon=True)

    def click():  # the segment job holds the session lock while it asks for the slice
        with s.lock:
            background.start()
            time.sleep(0.3)
            s.features.get(2)

    assert _finishes(click) and _finishes(background.join)
    assert calls == ([0, 2] if built else [2])


def test_disk_round_trip_and_reopen_encodes_nothing(model, tmp_path):
    data = oracle.blob_stack(6, 48)
    store = EmbeddingStore(tmp_path / "emb")
    s1, calls1 = _session(model, data, store)
    run_to_end(precompute(s1.features, 2, 6))
    assert sorted(calls1) == list(range(6)) and store.written == 6
    s1.add_points(1, 4, [[17, 17]], [1])
    first = s1.segment_slice(4).masks[1]

    s2, calls2 = _session(model, data, EmbeddingStore(tmp_path / "emb"))  # a reopened volume
    s2.add_points(1, 4, [[17, 17]], [1])
    assert np.array_equal(s2.segment_slice(4).masks[1], first)
    run_to_end(precompute(s2.features, 0, 6))
    assert calls2 == [] and s2.features.loaded == 6
    ref = s1.features.get(1)
    got = s2.features.get(1)
    assert all(torch.equal(a, b) for a, b in zip((ref.vision, *ref.high_res), (got.vision, *got.high_res)))


def test_corrupt_entry_and_changed_data_are_recomputed(model, tmp_path):
    data = oracle.blob_stack(4, 48)
    store = EmbeddingStore(tmp_path / "emb")
    s1, _ = _session(model, data, store)
    run_to_end(precompute(s1.features, 0, 4))
    key = s1.features._key_of(2)
    chunk = next(p for p in (store.path(key) / "vision").rglob("*") if p.is_file() and p.name != "zarr.json")
    raw = bytearray(chunk.read_bytes())
    raw[100] ^= 0xFF  # one flipped byte in a chunk
    chunk.write_bytes(bytes(raw))

    s2, calls2 = _session(model, data, store)
    run_to_end(precompute(s2.features, 0, 4))
    assert calls2 == [2] and store.rejected == 1  # detected, recomputed, rewritten
    assert torch.equal(s2.features.get(2).vision, s1.features.get(2).vision)

    changed = data.copy()
    changed[3] = 255 - changed[3]
    s3, calls3 = _session(model, changed, store)
    run_to_end(precompute(s3.features, 0, 4))
    assert calls3 == [3]  # only the changed slice misses
    s4, calls4 = _session(model, data, store)
    s4.stack.window = (10.0, 200.0)  # another display window feeds the encoder other values
    s4.features.get(0)
    assert calls4 == [0]


def test_precompute_order_budget_and_pause():
    assert outward_order(2, 6) == [2, 3, 1, 4, 0, 5]
    assert outward_order(0, 3) == [0, 1, 2]
    enc = Counting()
    cache = EmbeddingCache(enc, budget_bytes=4 * ENTRY, min_entries=1)
    steps = []
    summary = run_to_end(precompute(cache, 5, 20), steps.append)
    assert enc.calls == [5, 6, 4, 7] and summary.ready == [5, 6, 4, 7]  # stops at the budget
    assert [s.total for s in steps] == [4, 4, 4, 4]

    run_to_end(precompute(cache, 4, 20))  # moved on: the far old slice goes, the near ones stay
    assert enc.calls[4:] == [3] and sorted(cache.cached()) == [3, 4, 5, 6]

    enc = Counting()
    cache = EmbeddingCache(enc, budget_bytes=100 * ENTRY)
    pause, stop = threading.Event(), threading.Event()
    gen = precompute(cache, 3, 8, paused=pause.is_set, cancelled=stop.is_set, poll_s=0.005)
    assert next(gen).slice_idx == 3
    pause.set()  # a click: the next slice is not started while paused
    worker = threading.Thread(target=lambda: next(gen))
    worker.start()
    time.sleep(0.1)
    assert enc.calls == [3] and worker.is_alive()
    pause.clear()  # the click is done: it goes on
    worker.join(2)
    assert enc.calls == [3, 4]
    stop.set()
    with pytest.raises(StopIteration) as end:
        next(gen)
    assert end.value.value.cancelled and enc.calls == [3, 4]
