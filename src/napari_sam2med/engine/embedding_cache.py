"""Image embeddings of a session kept within a byte budget, with an optional disk tier.

:class:`EmbeddingCache` is a drop-in for :class:`~.preprocess.FeatureCache` (the same
``get`` / ``prefetch`` / ``in`` / ``len`` / ``clear``) that

* bounds the memory by **bytes** (``budget_bytes``), evicting least-recently-used slices, but always
  keeps ``min_entries`` slices (propagation's look-ahead batch needs them);
* computes each slice **once** even when a click and the background precompute
  (:mod:`.precompute`) ask for it at the same time: the second caller waits for the first;
* lets a **foreground** request (``get`` / ``prefetch``: a click, a propagation) preempt the
  **background** encode in flight (``ensure(..., background=True)``: the precompute) of another slice: that
  encode is stopped (:mod:`.preempt`), nothing of it is cached, and the precompute encodes that slice again
  later; a foreground request for the very slice the background is encoding waits for it instead;
* optionally reads and writes a :class:`~.embedding_store.EmbeddingStore` (zarr on disk), so
  reopening a volume encodes nothing.

:func:`attach_cache` puts one on a :class:`~.session.Session` in place of its default cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from typing import Callable, Iterable

from ..sam2.model import FrameFeatures
from .embedding_store import EmbeddingStore, slice_digest
from .preempt import Preempted, PreemptToken, preemptible

__all__ = ["EmbeddingCache", "attach_cache", "features_nbytes"]

log = logging.getLogger(__name__)

MB = 1 << 20


def features_nbytes(f: FrameFeatures) -> int:
    """Bytes held by one slice's features."""
    return sum(t.element_size() * t.numel() for t in (f.vision, f.vision_pos, *f.high_res))


class EmbeddingCache:
    """A least-recently-used cache of per-slice features bounded by bytes (see the module docstring).

    Parameters
    ----------
    compute : callable
        ``compute(slice_idxs) -> list[FrameFeatures]``: encodes slices (one batch).
    budget_bytes : int
        Memory budget of the cached features.
    min_entries : int
        Slices kept whatever the budget (at least 1).
    store : EmbeddingStore, optional
        Disk tier; needs ``key_of``.
    key_of : callable, optional
        ``key_of(idx) -> str``: the store key of slice ``idx`` (see :meth:`.EmbeddingStore.entry_key`).
    device : torch device
        Where features read from the store are put.
    prepare : callable, optional
        Called once before the first slice is marked in flight (the session builds its encoder there,
        under its lock, so that no computation in flight ever waits for that lock).

    Attributes
    ----------
    yield_s : float
        A background encode starts only when no foreground request was made for this long (a click's
        decoder runs just after its ``get``).
    preempt : bool
        Whether a foreground request stops a background encode in flight (True; False lets it finish).
    preempted : int
        Background encodes stopped by a foreground request.
    """

    def __init__(self, compute: Callable[[list[int]], list[FrameFeatures]], budget_bytes: int = 1024 * MB,
                 min_entries: int = 2, store: EmbeddingStore | None = None,
                 key_of: Callable[[int], str] | None = None, device="cpu",
                 prepare: Callable[[], object] | None = None):
        if budget_bytes <= 0:
            raise ValueError("the memory budget must be positive")
        if store is not None and key_of is None:
            raise ValueError("a disk store needs key_of")
        self._compute = compute
        self.budget_bytes = int(budget_bytes)
        self.min_entries = max(int(min_entries), 1)
        self.store, self._key_of, self.device = store, key_of, device
        self._prepare = prepare
        self._items: OrderedDict[int, FrameFeatures] = OrderedDict()
        self._sizes: dict[int, int] = {}
        self._inflight: dict[int, threading.Event] = {}
        self._background: dict[int, PreemptToken] = {}  # background encodes in flight
        self._foreground_at = -float("inf")  # time.monotonic() at the end of the last foreground request
        self._foreground = 0  # foreground requests running
        self.yield_s = 0.2
        self.preempt = True
        self.preempted = 0
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.encoded = 0  # slices run through the encoder
        self.loaded = 0  # slices read from the disk store
        self.entry_bytes: int | None = None  # size of one slice, known after the first one

    # -- FeatureCache API -----------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Slices that fit in the budget (at least ``min_entries``; an estimate until one is cached)."""
        if not self.entry_bytes:
            return self.min_entries
        return max(self.min_entries, self.budget_bytes // self.entry_bytes)

    @property
    def fits(self) -> int:
        """Slices the budget itself holds (at least 1; ``capacity`` may keep more, see ``min_entries``)."""
        if not self.entry_bytes:
            return 1
        return max(1, self.budget_bytes // self.entry_bytes)

    def get(self, idx: int) -> FrameFeatures:
        """Features of slice ``idx``: from memory, from a computation in flight, from disk, or encoded.

        A foreground request: a background encode of another slice in flight is stopped.
        """
        self._prepared()
        self._preempt_background({idx})
        try:
            return self._get(idx)
        finally:
            self._foreground_done()

    def _get(self, idx: int) -> FrameFeatures:
        while True:
            with self._lock:
                if idx in self._items:
                    self._items.move_to_end(idx)
                    self.hits += 1
                    return self._items[idx]
                event = self._inflight.get(idx)
                if event is None:
                    self.misses += 1
                    self._inflight[idx] = threading.Event()
                    break
            event.wait()  # another thread computes it: take its result (loop; it may be evicted or stopped)
        return self._fill([idx])[0]

    def prefetch(self, idxs: Iterable[int]) -> None:
        """Load or encode the listed slices that are not cached (encoded as one batch, at most ``capacity - 1``).

        A foreground request, like :meth:`get`.
        """
        idxs = list(dict.fromkeys(idxs))
        self._prepared()
        self._preempt_background(set(idxs))
        try:
            with self._lock:
                todo = [i for i in idxs if i not in self._items and i not in self._inflight]
                todo = todo[: max(self.capacity - 1, 1)]
                for i in todo:
                    self._inflight[i] = threading.Event()
            if todo:
                self._fill(todo)
        finally:
            self._foreground_done()

    def ensure(self, idx: int, background: bool = False) -> bool:
        """Make slice ``idx`` cached without counting a hit or miss (the precompute).

        Returns whether it had to be loaded or encoded here. It becomes the most recently used slice.

        With ``background=True`` a foreground request for another slice stops the encode, and none is
        started within ``yield_s`` of a foreground request: :class:`~.preempt.Preempted` is raised and
        nothing is cached (ask again later).
        """
        self._prepared()
        token = PreemptToken() if background else None
        while True:
            with self._lock:
                if idx in self._items:
                    self._items.move_to_end(idx)
                    return False
                event = self._inflight.get(idx)
                if event is None:
                    if token is not None and self.foreground_recent:
                        raise Preempted("a foreground request was made just now")
                    self._inflight[idx] = threading.Event()
                    if token is not None:
                        self._background[idx] = token
                    break
            event.wait()  # loop: cached now, or that computation was stopped (then compute it here)
        try:
            with preemptible(token) if token is not None else nullcontext():
                self._fill([idx])
        except Preempted:
            with self._lock:
                self.preempted += 1
            raise
        finally:
            with self._lock:
                self._background.pop(idx, None)
        return True

    @property
    def foreground_recent(self) -> bool:
        """Whether a foreground request was made within ``yield_s`` (or one is running)."""
        return self._foreground > 0 or time.monotonic() - self._foreground_at < self.yield_s

    def touch(self, idxs: Iterable[int]) -> None:
        """Mark cached slices as used, in order (the last is the most recent)."""
        with self._lock:
            for i in idxs:
                if i in self._items:
                    self._items.move_to_end(i)

    def __contains__(self, idx: int) -> bool:
        return idx in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._sizes.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        with self._lock:
            return sum(self._sizes.values())

    def set_budget(self, budget_bytes: int) -> None:
        """Change the budget; evicts at once when it shrank."""
        if budget_bytes <= 0:
            raise ValueError("the memory budget must be positive")
        with self._lock:
            self.budget_bytes = int(budget_bytes)
            self._evict()

    def cached(self) -> list[int]:
        """Cached slice indices, least recently used first."""
        with self._lock:
            return list(self._items)

    # -- internals ------------------------------------------------------------------
    def _preempt_background(self, wanted: set[int]) -> None:
        """A foreground request for ``wanted``: stop the background encodes of other slices."""
        with self._lock:
            self._foreground += 1
            tokens = [t for i, t in self._background.items() if i not in wanted] if self.preempt else []
        for t in tokens:
            t.request()

    def _foreground_done(self) -> None:
        with self._lock:
            self._foreground -= 1
            self._foreground_at = time.monotonic()

    def _prepared(self) -> None:
        if self._prepare is not None:
            self._prepare()
            self._prepare = None

    def _fill(self, idxs: list[int]) -> list[FrameFeatures]:
        """Load or compute ``idxs`` (all marked in flight by the caller) and store them."""
        try:
            found: dict[int, FrameFeatures] = {}
            keys: dict[int, str] = {}
            store = self.store
            if store is not None:
                for i in idxs:
                    keys[i] = self._key_of(i)
                    f = store.load(keys[i], self.device)
                    if f is not None:
                        found[i] = f
            todo = [i for i in idxs if i not in found]
            if todo:
                for i, f in zip(todo, self._compute(todo)):
                    found[i] = f
                    if store is not None:
                        store.save(keys[i], f)
            with self._lock:
                self.loaded += len(idxs) - len(todo)
                self.encoded += len(todo)
                for i in idxs:
                    self._put(i, found[i])
                self._evict(keep=set(idxs))
            return [found[i] for i in idxs]
        finally:
            with self._lock:
                for i in idxs:
                    event = self._inflight.pop(i, None)
                    if event is not None:
                        event.set()

    def _put(self, idx: int, f: FrameFeatures) -> None:
        size = features_nbytes(f)
        self.entry_bytes = size
        self._items[idx] = f
        self._items.move_to_end(idx)
        self._sizes[idx] = size

    def _evict(self, keep: set[int] = frozenset()) -> None:
        while len(self._items) > self.min_entries and self.nbytes > self.budget_bytes:
            victim = next((i for i in self._items if i not in keep), None)
            if victim is None:
                return
            del self._items[victim]
            self._sizes.pop(victim, None)


def attach_cache(session, budget_mb: float = 1024, store: EmbeddingStore | None = None) -> EmbeddingCache:
    """Give ``session`` an :class:`EmbeddingCache` (kept if it already has one; budget and store updated).

    Parameters
    ----------
    session : Session
        The session whose ``features`` cache is replaced (cached slices are carried over).
    budget_mb : float
        Memory budget in MB (2**20 bytes).
    store : EmbeddingStore, optional
        Disk tier; ``None`` keeps embeddings in memory only.
    """
    budget = int(budget_mb * MB)
    cache = session.features
    if not isinstance(cache, EmbeddingCache):
        model_keys: dict[int, str] = {}  # per store: hashing the encoder weights is done once

        def key_of(idx: int) -> str:
            s = new.store
            if id(s) not in model_keys:
                model_keys[id(s)] = s.model_key(session.model)
            return s.entry_key(model_keys[id(s)], slice_digest(session.stack.normalized(idx)))

        new = EmbeddingCache(session._encode, budget, min_entries=session.lookahead_batch + 1,
                             key_of=key_of, device=session.device, prepare=lambda: session.encoder)
        with new._lock:
            for idx, f in getattr(cache, "_items", {}).items():  # a FeatureCache's slices stay cached
                new._put(idx, f)
        session.features = cache = new
    cache.store = store
    cache.set_budget(budget)
    return cache
