"""The one driver of progress generators (no torch import, so light commands can use it).

Long work in this package is a generator that yields progress objects and *returns* its
result. Scripts, tests and the CLI drive it with :func:`run_to_end`; widgets run the same
generator in the shared job runner of ``_qt``.
"""

from __future__ import annotations

from typing import Callable, Generator, TypeVar

__all__ = ["run_to_end", "relay"]

R = TypeVar("R")


def run_to_end(gen: Generator[object, object, R], on_step: Callable[[object], None] | None = None) -> R:
    """Drive a progress generator to completion and return its result.

    Parameters
    ----------
    gen : generator
        Yields progress objects, returns the result.
    on_step : callable, optional
        Called with every yielded progress object (e.g. ``steps.append`` to keep them all,
        or a progress-bar update).

    Returns
    -------
    object
        The generator's return value.
    """
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_step is not None:
            on_step(step)


def relay(gen: Generator[object, object, R], convert: Callable[[object], object]) -> Generator[object, None, R]:
    """Re-yield a progress generator's steps converted, and return its result.

    The one adapter for nesting long work: ``result = yield from relay(inner, to_my_step)``.

    Parameters
    ----------
    gen : generator
        Inner progress generator.
    convert : callable
        Maps each inner step to the step to yield.

    Returns
    -------
    object
        The inner generator's return value.
    """
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        yield convert(step)
