"""Test helper for progress generators (long work yields progress and returns its result)."""

from __future__ import annotations

from typing import Any, Generator


def drain(gen: Generator) -> tuple[list, Any]:
    """Run a progress generator to the end; return (every yielded step, its return value)."""
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            return steps, stop.value
