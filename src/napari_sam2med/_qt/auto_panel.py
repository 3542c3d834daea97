"""Auto-segment in the segment dock (AutoSAM2, issue 13): a learned prompt encoder, no clicks.

:class:`AutoPanel` is the plain Qt part (prompt-encoder chooser, scope, video mode, Run /
Cancel, progress); :class:`AutoSegment` drives it for a
:class:`~napari_sam2med._qt.segment_widget.SegmentWidget`.

The result is a NEW object in the image's Labels layer, written as one undoable edit group.
The auto mask of one slice also becomes that object's mask prompt there (``Session.set_mask``,
as "Use label as mask" does), so clicks on other slices correct it and Propagate re-runs from
both. Undo removes the labels *and* that mask prompt; redo brings both back.

Scopes: *this slice*, or *whole stack* with ``sam2med auto``'s video modes: ``per-frame`` (the
shown slice's mask, else the largest, becomes the prompt) or ``first-frame-propagate`` (the shown
slice is auto-prompted, SAM2's memory propagates it both ways). Jobs run in the dock's propagation
:class:`~._worker.JobRunner` (clicks wait; Propagate, Undo, Cancel act as during a propagation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ._worker import JobEnd, Outcome
from .form_rows import PromptEncoderCombo, shipped_encoders, video_mode_combo
from .label_edits import EditGroup
from .segment_state import ObjectInfo, sync_session, write_masks

__all__ = ["AutoPanel", "AutoSegment", "shipped_encoders", "set_mask_prompt"]

log = logging.getLogger(__name__)


def load_encoder(source: tuple[str, str], model: Any):
    """Load a prompt encoder (``("file", path)`` or ``("shipped", name)``) checked against ``model``.

    Raises ``auto.prompt_net.PromptNetMismatch`` (its one-line message is shown as is) when it
    was trained against other SAM2 weights.
    """
    from ..auto.prompt_net import load_prompt_net

    kind, value = source
    if kind == "shipped":
        from ..auto import shipped

        if hasattr(shipped, "shipped_prompt_encoder_path"):
            return load_prompt_net(shipped.shipped_prompt_encoder_path(value), model)[0]
        return shipped.load_shipped_prompt_encoder(value, model)[0]
    return load_prompt_net(value, model)[0]


class AutoPanel(QGroupBox):
    """Prompt encoder, scope, video mode, Auto-segment / Cancel and progress (no napari logic)."""

    def __init__(self) -> None:
        super().__init__("Auto-segment (no clicks)")
        self.encoder_combo = PromptEncoderCombo(shipped_encoders())
        self.encoder_combo.setToolTip("AutoSAM2 prompt encoder: shipped ones, or a file written by "
                                      "`sam2med train --auto-prompt` (it must match the loaded SAM2)")
        self.scope_combo = QComboBox()
        self.scope_combo.addItem("this slice", "slice")
        self.scope_combo.addItem("whole stack", "stack")
        self.mode_combo = video_mode_combo()
        self.mode_combo.setToolTip("per-frame: every slice on its own; first-frame-propagate: the shown "
                                   "slice is auto-segmented and SAM2's memory propagates it both ways")
        self.run_button = QPushButton("Auto-segment")
        self.run_button.setToolTip("Segment a NEW object with the prompt encoder (undoable; correct it with "
                                   "clicks and propagate)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setValue(0)
        form = QFormLayout()
        form.addRow("Prompt encoder", self.encoder_combo)
        form.addRow("Scope", self.scope_combo)
        form.addRow("Video mode", self.mode_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        self.scope_combo.currentIndexChanged.connect(self._on_scope)
        self._on_scope()

    def _on_scope(self, *_: Any) -> None:
        self.mode_combo.setEnabled(self.scope() == "stack")

    def browse(self) -> bool:
        """Ask for a prompt-encoder file; returns whether one was chosen."""
        return self.encoder_combo.browse()

    def add_file(self, path: str | Path) -> None:
        """Offer ``path`` (above "Open file…") and select it."""
        self.encoder_combo.add_file(path)

    def encoder(self) -> tuple[str, str] | None:
        """``("shipped", name)``, ``("file", path)`` or None ("Open file…" is selected)."""
        return self.encoder_combo.encoder()

    def scope(self) -> str:
        """``"slice"`` or ``"stack"``."""
        return self.scope_combo.currentData()

    def video_mode(self) -> str:
        """``auto.infer.VideoMode`` value for a stack."""
        return self.mode_combo.currentData()

    def set_running(self, running: bool) -> None:
        """Enable Cancel (not Run) while a job runs; the bar shows "busy" until steps arrive."""
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)

    def show_progress(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` slices."""
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)


def set_mask_prompt(ann: Any, obj_id: int, slice_idx: int, mask: np.ndarray | None) -> None:
    """Make ``mask`` the object's mask prompt on a slice (None removes it), in the session too,
    and mark it as shown (the labels already hold it: nothing is segmented again)."""
    key = (obj_id, slice_idx)
    if mask is None:
        ann.mask_prompts.pop(key, None)
    else:
        ann.mask_prompts[key] = mask
    if ann.session is not None:
        sub = {key: ann.synced[key]} if key in ann.synced else {}
        sync_session(ann.session, {} if mask is None else {key: mask}, sub)
        ann.synced.pop(key, None)
        ann.synced.update(sub)
    if ann.shown is not None:
        ann.shown.pop(key, None)
        if key in ann.synced:
            ann.shown[key] = ann.synced[key]


@dataclass
class AutoEditGroup(EditGroup):
    """The undo step of one auto-segmentation: labels, plus the mask prompt and object it added."""

    ann: Any = None
    obj_id: int = 0
    prompt: tuple[int, np.ndarray] | None = None  # (slice, mask)
    propagated: set = field(default_factory=set)
    info: ObjectInfo | None = None

    def after_apply(self, undo: bool) -> None:
        """Called by ``segment_state.undo_step`` after the labels were restored / re-applied."""
        ann, obj = self.ann, self.obj_id
        if self.prompt is not None:
            set_mask_prompt(ann, obj, self.prompt[0], None if undo else self.prompt[1])
        if undo:
            self.info = ann.objects.pop(obj, None)
            ann.propagated.pop(obj, None)
        else:
            ann.objects.setdefault(obj, self.info or ObjectInfo())
            if self.propagated:
                ann.propagated.setdefault(obj, set()).update(self.propagated)


@dataclass
class AutoRun:
    """One auto-segmentation in flight (has ``ann`` like a propagation run: ``stop_jobs_of`` stops it)."""

    ann: Any
    key: tuple | None
    scope: str
    mode: str
    slice_idx: int
    source: tuple[str, str]
    group: AutoEditGroup
    obj_id: int = 0
    best: tuple[int, int, Any] = (0, -1, None)  # (pixels, slice, mask) of the largest mask (per-frame)

    def where(self) -> str:
        return f"slice {self.slice_idx}" if self.scope == "slice" else f"stack ({self.mode})"


def _mask_job(model: Any, nets: dict, source: tuple, stack: Any, slice_idx: int, propagate: bool = False):
    from ..auto.channels import check_stack
    from ..auto.infer import auto_mask

    net = _net(model, nets, source)
    check_stack(net.config.input_channels, stack, propagate)  # a multi-channel encoder needs its channels
    return auto_mask(model, net, stack.normalized(slice_idx))


def _per_frame_job(model: Any, nets: dict, source: tuple, stack: Any, obj_id: int):
    from ..auto.channels import check_stack
    from ..auto.infer import auto_steps

    net = _net(model, nets, source)
    check_stack(net.config.input_channels, stack)
    return (yield from auto_steps(model, net, stack, obj_id))


def _propagate_job(session: Any, obj_id: int):
    from ..engine.crop import propagate_session

    return (yield from propagate_session(session, direction="both", obj_ids=[obj_id]))


def _net(model: Any, nets: dict, source: tuple):
    key = (source, id(model))
    if key not in nets:
        nets.clear()  # one model at a time: keep only the current pair
        nets[key] = load_encoder(source, model)
    return nets[key]


class AutoSegment:
    """Auto-segment actions of the segment dock (see the module docstring).

    Parameters
    ----------
    widget : SegmentWidget
        Provides ``state``, ``model``, ``viewer``, ``propagation_runner``, ``segment_runner``,
        ``_pending``, ``_propagation``, ``_ensure_session``, ``current_slice``, ``new_object``,
        ``objects_changed``, ``show_info``, ``show_error``, ``show_busy`` and ``_run_next_segment``.
    panel : AutoPanel
    """

    def __init__(self, widget: Any, panel: AutoPanel) -> None:
        self.widget, self.panel = widget, panel
        self.run: AutoRun | None = None
        self._nets: dict = {}
        panel.run_button.clicked.connect(self.start)
        panel.cancel_button.clicked.connect(self.cancel)

    def cancel(self) -> None:
        """Stop the auto-segmentation after the slice in flight (the slices written are kept)."""
        if self.run is not None:
            self.widget.propagation_runner.cancel()

    def start(self, *_: Any) -> Any:
        """Start auto-segmenting; returns the worker (None after a message)."""
        w, p = self.widget, self.panel
        if w.propagation_runner.busy:
            return w.show_error("a propagation or auto-segmentation is running: wait for it or cancel it")
        if w.segment_runner.busy or any(w._pending.values()):
            return w.show_error("segmentation of a slice is still running: try again in a moment")
        if p.encoder() is None and not p.browse():
            return w.show_error("choose a prompt encoder first (Open file\u2026)")
        if not w._ensure_session():
            return None
        ann = w.state
        run = AutoRun(ann, ann.session_key, p.scope(), p.video_mode(), w.current_slice(), p.encoder(),
                      AutoEditGroup("auto-segment", ann=ann))
        self.run = w._propagation = run
        p.set_running(True)
        stack, model = ann.session.stack, w.model
        if run.scope == "stack" and run.mode == "per-frame":
            run.obj_id = run.group.obj_id = w.new_object()
            w.show_busy(f"Auto-segmenting {len(stack)} slices (per-frame)", ann, per_slice=True, n=len(stack))
            return w.propagation_runner.start(_per_frame_job, model, self._nets, run.source, stack, run.obj_id,
                                              on_step=self._on_step, on_end=self._on_end)
        w.show_busy(f"Auto-segmenting slice {run.slice_idx}", ann)
        return w.propagation_runner.start(_mask_job, model, self._nets, run.source, stack, run.slice_idx,
                                          run.scope == "stack", on_end=self._on_mask)

    # -- main thread ------------------------------------------------------------------
    def _current(self, run: AutoRun) -> bool:
        from .segment_layers import layers_ready

        return run.key == run.ann.session_key and layers_ready(self.widget.viewer, run.ann)

    def _write(self, run: AutoRun, slice_idx: int, masks: dict) -> None:
        ann = run.ann
        write_masks(ann.labels_layer, ann.geometry, slice_idx, masks, run.group)
        ann.note_ids(masks)
        ann.labels_layer.refresh()

    def _on_mask(self, end: JobEnd) -> None:
        run, w = self.run, self.widget
        if end.outcome is not Outcome.DONE:
            return self._finish(end)
        if not self._current(run):
            return self._finish(end, "the image, its layers or the model changed meanwhile; nothing was written")
        mask, score = end.value
        if not mask.any():
            return self._finish(end, f"no object found on slice {run.slice_idx} (object score {score:.2f}); "
                                     "nothing was written")
        run.obj_id = run.group.obj_id = w.new_object()
        self._write(run, run.slice_idx, {run.obj_id: mask})
        self._set_prompt(run, run.slice_idx, mask)
        if run.scope == "stack":  # first-frame-propagate from the shown slice
            w.show_busy(f"Propagating the auto mask from slice {run.slice_idx}", run.ann, per_slice=True,
                        n=len(run.ann.session.stack))
            w.propagation_runner.start(_propagate_job, run.ann.session, run.obj_id,
                                       on_step=self._on_step, on_end=self._on_end)
            return
        self.panel.show_progress(1, 1)
        self._finish(end)

    def _set_prompt(self, run: AutoRun, slice_idx: int, mask: np.ndarray) -> None:
        run.group.prompt = (slice_idx, mask)
        set_mask_prompt(run.ann, run.obj_id, slice_idx, mask)

    def _on_step(self, step: Any) -> None:
        run = self.run
        if run is None or not self._current(run):
            return
        self.panel.show_progress(step.done, step.total)
        mask = step.masks.get(run.obj_id)
        if mask is None:
            return
        self._write(run, step.slice_idx, {run.obj_id: mask})
        n, here = int(mask.sum()), step.slice_idx == run.slice_idx
        if n and not here:
            run.group.propagated.add(step.slice_idx)
            run.ann.propagated.setdefault(run.obj_id, set()).add(step.slice_idx)
        # per-frame: the shown slice's mask becomes the prompt, else the largest one
        if n and (here or (run.best[1] != run.slice_idx and n > run.best[0])):
            run.best = (n, step.slice_idx, mask)

    def _on_end(self, end: JobEnd) -> None:
        run = self.run
        if run.scope == "stack" and run.mode == "per-frame" and run.best[2] is not None and self._current(run):
            self._set_prompt(run, run.best[1], run.best[2])
        self._finish(end)

    def _finish(self, end: JobEnd, nothing: str = "no object found; nothing was written") -> None:
        run, w = self.run, self.widget
        self.run, w._propagation = None, None
        self.panel.set_running(False)
        if end.total is None and end.outcome is not Outcome.DONE:
            self.panel.show_progress(0, 1)
        group = run.group
        done = end.outcome is Outcome.DONE
        group.title = f"auto-segment {run.where()}" + ("" if done else f" ({end.outcome.value})")
        if group.edits:
            run.ann.history.push(group)
        elif run.obj_id and not getattr(run.ann.objects.get(run.obj_id), "name", "-"):
            del run.ann.objects[run.obj_id]  # nothing written: no empty, unnamed object left behind
        kept = f"the {len(group.edits)} slice(s) written were kept (Ctrl+Z undoes them)" if group.edits else \
            "nothing was written"
        if end.outcome is Outcome.FAILED:
            w.show_error(f"auto-segment failed: {end.describe_error()}; {kept}")
        elif end.outcome is Outcome.CANCELLED:
            if end.reason == "cancelled by the user":
                w.show_info(f"Auto-segment cancelled: {kept}.", run.ann)
            else:
                w.show_error(f"auto-segment stopped: {end.reason}; {kept}")
        elif group.edits:
            name = w.object_name(run.ann, run.obj_id)
            at = group.prompt[0] if group.prompt else run.slice_idx
            n = len(group.edits)
            w.show_info(f"Auto-segmented {name} ({run.where()}): {n} slice{'s' * (n != 1)} changed; its mask on "
                        f"slice {at} is its prompt: click to correct, then Propagate (Ctrl+Z undoes it).", run.ann)
        else:
            w.show_info(f"Auto-segment: {nothing}.", run.ann)
        w.objects_changed()
        w._run_next_segment()
