"""Run / Cancel plumbing shared by dock widgets that run one long job in a napari worker.

The job is a generator (see ARCHITECTURE: long work yields progress and returns
its result); :func:`relay_progress` turns its progress objects into the
``(done, total)`` pairs the progress bar shows.
"""

from __future__ import annotations

from typing import Any, Callable, Generator

from napari.qt.threading import thread_worker

__all__ = ["RunCancelMixin", "relay_progress"]


def relay_progress(gen: Generator) -> Generator[tuple[int, int], None, Any]:
    """Yield ``(step.done, step.total)`` for every step of ``gen``; return its result."""
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        yield step.done, step.total


class RunCancelMixin:
    """Start one worker at a time, show its progress, cancel it, re-enable Run when done.

    The widget provides ``progress`` (QProgressBar), ``run_btn`` and ``cancel_btn``
    (QPushButton) and sets ``worker = None`` in its ``__init__``.
    """

    worker: Any

    def _start_job(
        self,
        job: Callable[..., Generator],
        *args: Any,
        on_returned: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        on_aborted: Callable[[], None],
    ) -> None:
        """Run ``job(*args)`` in a napari thread worker; it must yield ``(done, total)``."""
        worker = thread_worker(job, start_thread=False)(*args)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(on_returned)
        worker.errored.connect(on_error)
        worker.aborted.connect(on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.progress.setValue(0)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        worker.start()

    def cancel(self) -> None:
        """Ask the running worker to stop after the step in flight."""
        if self.worker is not None:
            self.worker.quit()

    def _on_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def _on_finished(self) -> None:
        self.worker = None
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
