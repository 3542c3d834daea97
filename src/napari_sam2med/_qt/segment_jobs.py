"""Model work of the segment widget: per-slice segmentation and propagation in napari workers.

:class:`SegmentJobsMixin` holds the worker side of
:class:`~napari_sam2med._qt.segment_widget.SegmentWidget`: it queues slices
whose prompts changed, segments them one at a time, runs propagation with
cancel, and writes each result into the Labels layer on the main thread as
one undoable edit group.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .label_edits import EditGroup
from .segment_state import write_masks


def _segment_job(session: Any, slice_idx: int, obj_ids: list[int]):
    with session.lock:
        return session.segment_slice(slice_idx, obj_ids)


def _propagation_job(session: Any, kwargs: dict):
    yield from session.propagate(**kwargs)


class SegmentJobsMixin:
    """Worker plumbing mixed into the segment widget.

    The widget provides ``state`` (a ``SegmentationState``), ``status``,
    ``prompt_panel``, ``propagate_panel``, ``model_panel``, ``show_info``,
    ``show_error``, ``update_prompts`` and the attributes ``_segment_worker``,
    ``_propagation_worker``, ``_propagation_group`` and ``_pending``
    (slice -> object ids whose prompts vanished there).
    """

    # -- one slice at a time --------------------------------------------------------
    def _run_next_segment(self) -> None:
        from napari.qt.threading import create_worker

        if self._segment_worker is not None or self._propagation_worker is not None or not self._pending:
            return
        state = self.state
        slice_idx = min(self._pending)
        removed = self._pending.pop(slice_idx)
        prompted = sorted(o for o, s in state.synced if s == slice_idx)
        # Objects whose prompts on this slice were all deleted lose their mask there.
        cleared = {o: np.zeros(state.geometry.frame_shape, bool) for o in removed if o not in prompted}
        if not prompted:
            self._write_result(slice_idx, cleared, state.session_key)
            return self._run_next_segment()
        key = state.session_key
        worker = create_worker(_segment_job, state.session, slice_idx, prompted,
                               _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda res: self._write_result(slice_idx, {**cleared, **res.masks}, key))
        worker.errored.connect(lambda err: self.show_error(f"segmentation failed: {err}"))
        worker.finished.connect(self._on_segment_finished)
        self._segment_worker = worker
        self.show_info(f"Segmenting slice {slice_idx}...")
        worker.start()

    def _on_segment_finished(self) -> None:
        self._segment_worker = None
        self._run_next_segment()

    def _write_result(self, slice_idx: int, masks: dict, key: tuple | None) -> None:
        state = self.state
        if key != state.session_key or state.labels_layer is None or not masks:
            return
        group = EditGroup(f"segment slice {slice_idx}")
        if write_masks(state.labels_layer, state.geometry, slice_idx, masks, group):
            state.history.push(group)
            state.labels_layer.refresh()
        shown = ", ".join(f"{o}: {int(m.sum())} px" for o, m in sorted(masks.items()))
        self.show_info(f"Slice {slice_idx}: {shown}")

    # -- propagation ----------------------------------------------------------------
    def propagate(self) -> Any:
        """Start propagating in a worker; returns the worker (or None after an error message)."""
        from napari.qt.threading import create_worker

        if self._propagation_worker is not None:
            return self.show_error("a propagation is already running")
        if self._segment_worker is not None or self._pending:
            return self.show_error("segmentation of a slice is still running: try again in a moment")
        self.update_prompts()
        if self.state.session is None:
            return None
        state, panel = self.state, self.propagate_panel
        obj_ids = [o for o in state.session.prompts.object_ids if state.session.prompts.slices(o)]
        if panel.current_only.isChecked():
            obj_ids = [o for o in obj_ids if o == self.prompt_panel.object_spin.value()]
        if not obj_ids:
            return self.show_error("no prompts: click on the object (or draw a box) before propagating")
        start, stop = panel.slice_range(state.geometry.n_slices)
        kwargs = {"direction": panel.direction(), "start": start, "stop": stop, "obj_ids": obj_ids}
        self._propagation_group = EditGroup(f"propagate {kwargs['direction']} {start}..{stop - 1}")
        worker = create_worker(_propagation_job, state.session, kwargs,
                               _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_step)
        worker.errored.connect(lambda err: self.show_error(f"propagation failed: {err}"))
        worker.aborted.connect(lambda: self.show_info("Propagation cancelled: finished slices were kept."))
        worker.finished.connect(self._on_propagation_finished)
        self._propagation_worker = worker
        panel.set_running(True)
        self.show_info(f"Propagating objects {obj_ids} ({kwargs['direction']}, slices {start}..{stop - 1})...")
        worker.start()
        return worker

    def _on_step(self, step: Any) -> None:
        state = self.state
        if self._propagation_group is None or state.labels_layer is None:
            return
        write_masks(state.labels_layer, state.geometry, step.slice_idx, step.masks, self._propagation_group)
        state.labels_layer.refresh()
        self.propagate_panel.progress.setRange(0, max(1, step.total))
        self.propagate_panel.progress.setValue(step.done)

    def cancel(self) -> None:
        """Stop the running propagation after the slice in flight (whole slices only)."""
        if self._propagation_worker is not None:
            self._propagation_worker.quit()

    def _on_propagation_finished(self) -> None:
        group, self._propagation_group = self._propagation_group, None
        self._propagation_worker = None
        self.propagate_panel.set_running(False)
        if group is not None:
            self.state.history.push(group)  # empty groups are dropped
            text = self.status.text()
            if text.startswith("Propagating"):  # neither cancelled nor failed
                self.show_info(f"Propagation done: {len(group.edits)} slices changed (Ctrl+Z undoes it).")
        self._run_next_segment()

    def is_busy(self) -> bool:
        """Whether a segmentation, propagation or model load is running or queued."""
        return any(w is not None for w in (self._segment_worker, self._propagation_worker,
                                            self.model_panel._worker)) or bool(self._pending)
