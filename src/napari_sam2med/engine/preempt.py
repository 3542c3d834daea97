"""Stopping a background encode so that a foreground one (a click, a propagation) gets the CPU.

The background precompute (:mod:`.precompute`) asks the
:class:`~.embedding_cache.EmbeddingCache` for a slice inside :func:`preemptible`, which makes a
:class:`PreemptToken` the *current token* of its thread. The engines look it up
(:func:`current_token`) and, while a token is current, run so that :meth:`PreemptToken.request`
from another thread stops them:

* ONNX Runtime: the run gets ``RunOptions`` whose ``terminate`` flag the request sets;
* OpenVINO: the request is started asynchronously and ``cancel()``-ed;
* PyTorch: forward pre-hooks on the image encoder's modules raise between modules (:func:`stop_points`).

The stopped call raises :class:`Preempted`; its result is never used. A call in any other thread
(a click's own encode) has no current token and is never stopped.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["Preempted", "PreemptToken", "current_token", "preemptible", "stop_points"]


class Preempted(Exception):
    """A background computation was stopped (or not started) because a foreground one needs the CPU."""


class PreemptToken:
    """A one-shot stop request for the background computation of one thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._aborts: list[Callable[[], object]] = []

    @property
    def requested(self) -> bool:
        """Whether :meth:`request` was called."""
        return self._event.is_set()

    def request(self) -> None:
        """Ask the computation to stop; runs the registered abort callbacks (from the caller's thread)."""
        with self._lock:
            self._event.set()
            aborts = list(self._aborts)
        for abort in aborts:
            abort()

    def check(self) -> None:
        """Raise :class:`Preempted` if a stop was requested."""
        if self._event.is_set():
            raise Preempted("a foreground request preempted this background computation")

    @contextmanager
    def on_request(self, abort: Callable[[], object]) -> Iterator[None]:
        """Call ``abort`` on a stop request while the block runs (at once if one was already made)."""
        with self._lock:
            self._aborts.append(abort)
            already = self._event.is_set()
        try:
            if already:
                abort()
            yield
        finally:
            with self._lock:
                self._aborts.remove(abort)


_local = threading.local()


def current_token() -> PreemptToken | None:
    """The token of the calling thread's preemptible computation, or ``None`` (never stopped)."""
    return getattr(_local, "token", None)


@contextmanager
def preemptible(token: PreemptToken) -> Iterator[PreemptToken]:
    """Make ``token`` the calling thread's current token for the block (the previous one comes back after)."""
    previous = current_token()
    _local.token = token
    try:
        yield token
    finally:
        _local.token = previous


@contextmanager
def stop_points(module, token: PreemptToken | None) -> Iterator[None]:
    """Let a PyTorch forward of ``module`` stop between its submodules when ``token`` is requested.

    Forward pre-hooks are put on every submodule for the block; they raise :class:`Preempted` only in
    the thread whose current token is ``token``, so another thread running the same modules at the
    same time (a click's encode) passes through. Nothing is hooked when ``token`` is ``None``.
    """
    if token is None:
        yield
        return

    def hook(*_):
        if current_token() is token:
            token.check()

    handles = [m.register_forward_pre_hook(hook) for m in module.modules()]
    try:
        token.check()
        yield
    finally:
        for h in handles:
            h.remove()
