"""The one job runner of the dock widgets: progress, Cancel, errors, and how a job ended.

A job is a function (or generator function) run in a napari thread worker. A
generator job yields progress objects (anything with ``done``/``total``, or a
``(done, total)`` pair) and *returns* its result, like every long function of
the package (see ARCHITECTURE). The runner

* shows the progress on an optional ``QProgressBar`` and enables the Run/Cancel buttons;
* hands each yielded step to ``on_step`` on the main thread (layers are touched only there);
* ends with exactly one :class:`JobEnd` whose :class:`Outcome` says whether the job
  finished, was cancelled (by the user or because its layers went away) or failed.
  Nothing is decided by reading a label's text.

The job runs inside :func:`_guarded`, which turns any exception into a returned
:class:`_Failure`: superqt treats a ``RuntimeError`` raised in a worker as "the
worker was deleted" and swallows it, which would hide real errors (torch raises
``RuntimeError`` for most failures).
"""

from __future__ import annotations

import inspect
import traceback
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from qtpy.QtCore import QObject, Signal

__all__ = ["JobEnd", "JobRunner", "Outcome", "job_layout"]


class Outcome(Enum):
    """How a job ended."""

    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class JobEnd:
    """The end of one job.

    Attributes
    ----------
    outcome : Outcome
        Done, cancelled or failed.
    value : object
        The job's return value (``DONE`` only).
    error : BaseException or None
        The exception (``FAILED`` only).
    reason : str
        Why a job was cancelled ("cancelled by the user", "its image layer was deleted", ...).
    steps : int
        How many progress steps reached the main thread.
    done, total : int or None
        The last progress reported (what was actually done).
    """

    outcome: Outcome
    value: Any = None
    error: BaseException | None = None
    reason: str = ""
    steps: int = 0
    done: int | None = None
    total: int | None = None

    def describe_error(self) -> str:
        """One line for the user: the exception's type when its message is empty."""
        err = self.error
        if err is None:
            return ""
        return str(err) or type(err).__name__


@dataclass
class _Failure:
    error: BaseException
    trace: str


def _guarded(func: Callable, args: tuple):
    """Generator wrapper: yields the job's steps, returns its value or a :class:`_Failure`."""
    try:
        if inspect.isgeneratorfunction(func):
            return (yield from func(*args))
        return func(*args)
    except Exception as exc:  # reported through JobEnd, never swallowed
        return _Failure(exc, traceback.format_exc())


def progress_of(step: Any) -> tuple[int, int] | None:
    """``(done, total)`` of a progress object or pair, or None."""
    if isinstance(step, tuple) and len(step) == 2:
        return int(step[0]), int(step[1])
    done, total = getattr(step, "done", None), getattr(step, "total", None)
    if done is None or total is None:
        return None
    return int(done), int(total)


class JobRunner(QObject):
    """Run one job at a time for a dock widget.

    Parameters
    ----------
    progress : QProgressBar, optional
        Shows ``done / total`` of the steps; left at what was done when a job is cancelled.
    run_button, cancel_button : QPushButton, optional
        Disabled / enabled while a job runs.
    parent : QObject, optional

    Signals
    -------
    ended(JobEnd)
        Emitted once per job, after its own ``on_end`` callback.
    """

    ended = Signal(object)

    def __init__(self, progress: Any = None, run_button: Any = None, cancel_button: Any = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.progress, self.run_button, self.cancel_button = progress, run_button, cancel_button
        self.worker: Any = None
        self._end: JobEnd | None = None
        self._on_step: Callable | None = None
        self._on_end: Callable | None = None
        self._set_running(False)

    @property
    def busy(self) -> bool:
        """Whether a job runs."""
        return self.worker is not None

    def start(self, job: Callable, *args: Any, on_step: Callable[[Any], None] | None = None,
              on_end: Callable[[JobEnd], None] | None = None) -> Any:
        """Run ``job(*args)`` in a thread worker; returns the worker.

        Raises
        ------
        RuntimeError
            If a job of this runner is still running (callers check :attr:`busy`).
        """
        from napari.qt.threading import create_worker

        if self.worker is not None:
            raise RuntimeError("a job is already running")
        worker = create_worker(_guarded, job, args, _start_thread=False, _ignore_errors=True)
        self._end = JobEnd(Outcome.FAILED, error=RuntimeError("the job stopped unexpectedly"))
        self._on_step, self._on_end = on_step, on_end
        worker.yielded.connect(self._step)
        worker.returned.connect(self._returned)
        worker.errored.connect(self._errored)
        worker.aborted.connect(self._aborted)
        worker.finished.connect(self._finished)
        self.worker = worker
        self._cancel_reason = "cancelled by the user"
        if self.progress is not None:
            self.progress.setRange(0, 0)  # busy until the first step says how many there are
        self._set_running(True)
        worker.start()
        return worker

    def cancel(self, reason: str = "cancelled by the user") -> None:
        """Stop the job after the step in flight (a function job runs to its end, its result dropped)."""
        if not isinstance(reason, str):  # connected straight to a button's clicked(bool)
            reason = "cancelled by the user"
        if self.worker is not None:
            self._cancel_reason = reason
            self.worker.quit()

    # -- worker signals (main thread) ---------------------------------------------------
    def _step(self, step: Any) -> None:
        end = self._end
        end.steps += 1
        pair = progress_of(step)
        if pair is not None:
            end.done, end.total = pair
            if self.progress is not None:
                self.progress.setRange(0, max(pair[1], 1))
                self.progress.setValue(pair[0])
        if self._on_step is not None:  # a step computed before a cancel is still a whole step
            self._on_step(step)

    def _returned(self, value: Any) -> None:
        end = self._end
        if isinstance(value, _Failure):
            end.outcome, end.error = Outcome.FAILED, value.error
            end.reason = value.trace
        elif self.worker is not None and self.worker.abort_requested:
            end.outcome, end.error, end.reason = Outcome.CANCELLED, None, self._cancel_reason
        else:
            end.outcome, end.value, end.error = Outcome.DONE, value, None

    def _errored(self, exc: BaseException) -> None:
        self._end.outcome, self._end.error = Outcome.FAILED, exc

    def _aborted(self) -> None:
        self._end.outcome, self._end.error, self._end.reason = Outcome.CANCELLED, None, self._cancel_reason

    def _finished(self) -> None:
        end, on_end = self._end, self._on_end
        self.worker, self._on_step, self._on_end = None, None, None
        self._set_running(False)
        if self.progress is not None:
            if end.total is not None:  # what was done, not 100 % when it was not
                self.progress.setRange(0, max(end.total, 1))
                self.progress.setValue(end.done if end.outcome is not Outcome.DONE else end.total)
            else:
                self.progress.setRange(0, 1)
                self.progress.setValue(1 if end.outcome is Outcome.DONE else 0)
        if on_end is not None:
            on_end(end)
        self.ended.emit(end)

    def _set_running(self, running: bool) -> None:
        if self.run_button is not None:
            self.run_button.setEnabled(not running)
        if self.cancel_button is not None:
            self.cancel_button.setEnabled(running)


def job_layout(widget: Any, form: Any, run_button: Any, cancel_button: Any, *below: Any) -> Any:
    """The layout every job dock shares: its form, a Run / Cancel row, then ``below`` (progress bar,
    status lines, plots) in order. Returns the widget's QVBoxLayout (for stretches or more rows)."""
    from qtpy.QtWidgets import QHBoxLayout, QVBoxLayout

    buttons = QHBoxLayout()
    buttons.addWidget(run_button)
    buttons.addWidget(cancel_button)
    layout = QVBoxLayout(widget)
    layout.addLayout(form)
    layout.addLayout(buttons)
    for item in below:
        layout.addWidget(item)
    return layout
