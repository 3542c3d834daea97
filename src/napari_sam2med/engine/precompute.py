"""Background precompute: encode the slices around the one the user looks at, nearest first.

:func:`precompute` is a generator (run it with :func:`.progress.run_to_end` or the dock's job
runner). It encodes the current slice, then its neighbours outward (``c, c+1, c-1, c+2, ...``),
into an :class:`~.embedding_cache.EmbeddingCache`, and stops when the cache's memory budget is
full, so it never evicts a slice nearer to the user than the one it would add. Between slices it
checks ``paused()`` (a click or a propagation is running: it waits, encoding nothing) and
``cancelled()`` (the user moved on: it returns).

Its encodes are *background* requests of the cache: a click or a propagation asking the cache for
another slice stops the encode in flight (:mod:`.preempt`); that slice is then encoded again once
the cache has seen no foreground request for ``cache.yield_s`` and ``paused()`` is False.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .preempt import Preempted

__all__ = ["PrecomputeStep", "PrecomputeSummary", "outward_order", "precompute"]


@dataclass
class PrecomputeStep:
    """One slice made ready (``encoded``: it was loaded or encoded now, not already cached)."""

    slice_idx: int
    encoded: bool
    done: int
    total: int


@dataclass
class PrecomputeSummary:
    """What one precompute run left ready."""

    center: int
    ready: list[int]
    encoded: int
    cancelled: bool = False
    preempted: int = 0  # encodes stopped (or not started) for a foreground request, then redone


def outward_order(center: int, n: int) -> list[int]:
    """Slice indices of a stack of ``n`` from ``center`` outward: ``c, c+1, c-1, c+2, c-2, ...``."""
    if not 0 <= center < n:
        raise ValueError(f"slice {center} is out of range 0..{n - 1}")
    order = [center]
    for d in range(1, n):
        order += [i for i in (center + d, center - d) if 0 <= i < n]
    return order


def _never() -> bool:
    return False


def precompute(cache, center: int, n: int, *, max_slices: int | None = None,
               paused: Callable[[], bool] = _never, cancelled: Callable[[], bool] = _never,
               poll_s: float = 0.02):
    """Encode slices outward from ``center`` until the cache's budget (or ``max_slices``) is reached.

    Parameters
    ----------
    cache : EmbeddingCache
        Where the features go (``ensure``, ``touch``, ``fits``, ``entry_bytes``, ``foreground_recent``).
    center : int
        The slice the user looks at (encoded first).
    n : int
        Slices in the stack.
    max_slices : int, optional
        Stop after this many slices around ``center`` are ready.
    paused : callable
        While it returns True no slice is started (checked between slices; a foreground request of the
        cache also stops the slice in flight, see the module docstring).
    cancelled : callable
        Returning True ends the run (checked between slices and while paused).
    poll_s : float
        How often ``paused`` is checked again while paused.

    Yields
    ------
    PrecomputeStep
        After each slice (``done`` of ``total``, the slices planned).

    Returns
    -------
    PrecomputeSummary
    """
    order = outward_order(center, n)
    if max_slices is not None:
        order = order[: max(int(max_slices), 0)]

    def planned() -> int:
        return min(len(order), cache.fits) if cache.entry_bytes else len(order)

    if cache.entry_bytes:  # keep the nearest slices most recently used: others are evicted first
        cache.touch(reversed(order[: planned()]))
    ready: list[int] = []
    encoded = preempted = 0
    pos = 0
    while pos < planned():
        while (paused() or cache.foreground_recent) and not cancelled():
            time.sleep(poll_s)
        if cancelled():
            return PrecomputeSummary(center, ready, encoded, cancelled=True, preempted=preempted)
        idx = order[pos]
        try:
            new = cache.ensure(idx, background=True)
        except Preempted:  # nothing was cached: the same slice again once the foreground work is done
            preempted += 1
            continue
        encoded += int(new)
        ready.append(idx)
        pos += 1
        yield PrecomputeStep(idx, new, pos, planned())
    return PrecomputeSummary(center, ready, encoded, preempted=preempted)
