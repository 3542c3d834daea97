"""Model work of the segment dock: per-slice segmentation and propagation, each bound to its image.

:class:`SegmentJobs` is mixed into
:class:`~napari_sam2med._qt.segment_widget.SegmentWidget`. Both kinds of job run
in the shared :class:`~._worker.JobRunner`. A job remembers the
:class:`~.segment_state.ImageAnnotation` it started on and writes only into
that annotation's labels layer, on the main thread, one whole slice at a time,
as one undoable edit group. If those layers leave the viewer the job is
stopped and says so (see :meth:`SegmentJobs.stop_jobs_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.crop import propagate_session
from ._worker import JobEnd, Outcome
from .label_edits import EditGroup
from .segment_state import ImageAnnotation, write_masks


def _segment_job(session: Any, slice_idx: int, obj_ids: list[int]):
    with session.lock:
        return session.segment_slice(slice_idx, obj_ids)


def _propagation_job(session: Any, kwargs: dict):
    # The engine's one entry point: plain propagation, or per-object crop windows for models trained
    # on crops around the prompt (``config.crop_context``, e.g. sam2med-small-ct).
    return (yield from propagate_session(session, **kwargs))


@dataclass
class PropagationRun:
    """One propagation: its image's annotation, what it was asked, what it wrote."""

    ann: ImageAnnotation
    direction: str
    start: int
    stop: int
    obj_ids: list[int]
    group: EditGroup = field(default_factory=lambda: EditGroup("propagate"))
    slices: set[int] = field(default_factory=set)

    def title(self, end: JobEnd | None = None) -> str:
        asked = f"propagate {self.direction} {self.start}..{self.stop - 1}"
        if end is None or end.outcome is Outcome.DONE:
            return asked
        return f"{asked}: {len(self.slices)} of {self.stop - self.start} slices ({end.outcome.value})"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class SegmentJobs:
    """Worker side of the segment dock.

    The widget provides ``state`` (the current :class:`ImageAnnotation`), ``viewer``,
    ``segment_runner`` and ``propagation_runner`` (:class:`JobRunner`),
    ``prompt_panel``, ``propagate_panel``, ``model_panel``, ``show_info``, ``show_error``,
    ``show_busy``, ``update_prompts``, ``current_object`` and ``_pending``
    (annotation -> {slice -> object ids whose prompts vanished there}).
    """

    # -- one slice at a time --------------------------------------------------------
    def _run_next_segment(self) -> None:
        if self.segment_runner.busy or self.propagation_runner.busy:
            return
        ann, pending = next(((a, p) for a, p in self._pending.items() if p), (None, None))
        if ann is None:
            return
        slice_idx = min(pending)
        removed = pending.pop(slice_idx)
        prompted = sorted(o for o, s in ann.synced if s == slice_idx)
        # Objects whose prompts on this slice were all deleted lose their mask there.
        cleared = {o: np.zeros(ann.geometry.frame_shape, bool) for o in removed if o not in prompted}
        if not prompted:
            self._write_result(ann, ann.session_key, slice_idx, cleared)
            return self._run_next_segment()
        key = ann.session_key
        self._segment_ann = ann
        self.show_busy(f"Segmenting slice {slice_idx}", ann)

        def on_end(end: JobEnd) -> None:
            self._segment_ann = None
            if end.outcome is Outcome.DONE:
                self.note_job_time()
                self._write_result(ann, key, slice_idx, {**cleared, **end.value.masks})
            elif end.outcome is Outcome.FAILED:
                self.show_error(f"segmentation failed: {end.describe_error()}")
            elif end.reason != "cancelled by the user":
                self.show_error(f"segmentation of slice {slice_idx} stopped: {end.reason}")
            self._run_next_segment()

        self.segment_runner.start(_segment_job, ann.session, slice_idx, prompted, on_end=on_end)

    def _write_result(self, ann: ImageAnnotation, key: tuple | None, slice_idx: int, masks: dict) -> None:
        from .segment_layers import layers_ready

        if key != ann.session_key or not masks or not layers_ready(self.viewer, ann):
            return
        group = EditGroup(f"segment slice {slice_idx}")
        if write_masks(ann.labels_layer, ann.geometry, slice_idx, masks, group):
            ann.note_ids(masks)
            ann.history.push(group)
            ann.labels_layer.refresh()
        found = [o for o, m in sorted(masks.items()) if m.any()]
        empty = [o for o, m in sorted(masks.items()) if not m.any()]
        parts = []
        if found:
            parts.append(", ".join(f"{self.object_name(ann, o)} ({int(masks[o].sum())} pixels)" for o in found))
        if empty:
            parts.append("nothing found for " + ", ".join(self.object_name(ann, o) for o in empty))
        self.show_info(f"Segmented slice {slice_idx}: {'; '.join(parts)}.", ann, stale_after_s=self.stale_after_s)
        self.objects_changed()

    # -- propagation ----------------------------------------------------------------
    def propagate(self) -> Any:
        """Start propagating in a worker; returns the worker (or None after an error message)."""
        if self.propagation_runner.busy:
            return self.show_error("a propagation is already running")
        if self.segment_runner.busy or any(self._pending.values()):
            return self.show_error("segmentation of a slice is still running: try again in a moment")
        self.update_prompts()
        ann = self.state
        if ann.session is None:
            return None
        panel = self.propagate_panel
        obj_ids = [o for o in ann.session.prompts.object_ids if ann.session.prompts.slices(o)]
        if panel.current_only.isChecked():
            obj_ids = [o for o in obj_ids if o == self.current_object()]
        obj_ids = [o for o in obj_ids if not ann.objects.get(o) or not ann.objects[o].hidden]
        if not obj_ids:
            return self.show_error("no prompts: click on the object (or draw a box) before propagating")
        start, stop = panel.slice_range(ann.geometry.n_slices)
        ann.session.set_memory(panel.memory())
        run = PropagationRun(ann, panel.direction(), start, stop, obj_ids)
        self._propagation = run
        kwargs = {"direction": run.direction, "start": start, "stop": stop, "obj_ids": obj_ids}
        names = ", ".join(self.object_name(ann, o) for o in obj_ids)
        self.show_busy(f"Propagating {names} through slices {start}..{stop - 1} ({run.direction})", ann,
                       per_slice=True, n=stop - start)
        return self.propagation_runner.start(_propagation_job, ann.session, kwargs,
                                             on_step=self._on_step, on_end=self._on_propagation_end)

    def _on_step(self, step: Any) -> None:
        from .segment_layers import layers_ready

        run = self._propagation
        if run is None or not layers_ready(self.viewer, run.ann):
            return  # the job is being stopped (its layers went away): write nothing anywhere
        ann = run.ann
        write_masks(ann.labels_layer, ann.geometry, step.slice_idx, step.masks, run.group)
        ann.note_ids(step.masks)
        run.slices.add(step.slice_idx)
        for obj_id, mask in step.masks.items():
            if mask.any():
                ann.propagated.setdefault(obj_id, set()).add(step.slice_idx)
        ann.labels_layer.refresh()

    def cancel(self) -> None:
        """Stop the running propagation after the slice in flight (whole slices only)."""
        self.propagation_runner.cancel()

    def _on_propagation_end(self, end: JobEnd) -> None:
        run, self._propagation = self._propagation, None
        if run is None:
            return
        if end.outcome is Outcome.DONE and run.slices:
            self.note_job_time()
        run.group.title = run.title(end)
        run.ann.history.push(run.group)  # empty groups are dropped
        written = _count(len(run.slices), "slice")
        kept = f"{written} written were kept (Ctrl+Z undoes them)" if run.slices else "nothing was written"
        if end.outcome is Outcome.DONE:
            self.show_info(f"Propagation done: {_count(len(run.group.edits), 'slice')} changed "
                           "(Ctrl+Z undoes it).", run.ann)
        elif end.outcome is Outcome.CANCELLED:
            if end.reason == "cancelled by the user":
                self.show_info(f"Propagation cancelled after {written} of {run.stop - run.start}: {kept}.",
                               run.ann)
            else:
                self.show_error(f"propagation stopped: {end.reason}; {kept}")
        else:
            self.show_error(f"propagation failed: {end.describe_error()}; {kept}")
        self.objects_changed()
        self._run_next_segment()

    # -- jobs bound to layers -------------------------------------------------------
    def stop_jobs_of(self, ann: ImageAnnotation, reason: str) -> None:
        """Stop the jobs working on ``ann`` (its layers are going away); they write nothing more."""
        self._pending.pop(ann, None)
        if self._propagation is not None and self._propagation.ann is ann:
            self.propagation_runner.cancel(reason)
        if self._segment_ann is ann:
            self.segment_runner.cancel(reason)

    def is_busy(self) -> bool:
        """Whether a segmentation, propagation or model load is running or queued."""
        return (self.segment_runner.busy or self.propagation_runner.busy or self.model_panel.busy()
                or any(bool(p) for p in self._pending.values()))
