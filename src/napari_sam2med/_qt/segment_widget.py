"""The main dock widget: click to segment a slice, then propagate through the stack.

All model work runs in the shared job runner (:mod:`._worker`); results are
written into the image's Labels layer on the main thread, one whole slice at a
time, and every write is undoable. The dock keeps one annotation state per image
layer (:class:`~.segment_state.ImageAnnotation`, held by the viewer's
:class:`~.viewer_context.ViewerContext`), so switching images, or closing and
reopening the dock, loses no work. Closing the dock cancels its jobs and
disconnects everything it hooked into the viewer (:mod:`.connections`).
"""

from __future__ import annotations

import time
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QScrollArea, QVBoxLayout, QWidget

from ._worker import JobRunner
from .auto_panel import AutoPanel, AutoSegment
from .connections import Connections, DockLifecycle
from .label_edits import EXTERNAL
from .model_panel import ModelPanel
from .object_list import ObjectListPanel
from .precompute_panel import PrecomputePanel
from .project_panel import ProjectActions, ProjectPanel
from .prompt_layers import install_polarity_callback
from .reference_dice import ReferenceDicePanel
from .segment_axis import SegmentAxis
from .segment_jobs import SegmentJobs
from .segment_layers import ensure_layers, find_layer
from .segment_panels import ImagePanel, PromptPanel, PropagatePanel
from .segment_prompts import SegmentPrompts
from .segment_state import ImageAnnotation
from .shortcuts import Shortcut, ShortcutHelp
from .stack_geometry import stack_axis_choices
from .viewer_context import context_for, unwrap_viewer


class SegmentWidget(DockLifecycle, SegmentJobs, SegmentPrompts, SegmentAxis, ProjectActions, QWidget):
    """SAM2 segment & propagate.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it by this name).
    """

    #: Seconds after which a result message is replaced by a hint (it no longer describes the screen).
    stale_after_s = 20.0

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.context = context_for(self.viewer)
        self.connections = Connections()
        self._blank = ImageAnnotation()
        self._current: ImageAnnotation | None = None
        self._adopted: set[int] = set()
        self._pending: dict[ImageAnnotation, dict[int, set[int]]] = {}
        self._propagation = None
        self._segment_ann: ImageAnnotation | None = None
        self._syncing = False
        self._closed = False
        self._docked = False
        self._create_on_switch = True
        self._message_ann: ImageAnnotation | None = None
        self._busy_since: float | None = None
        self._seconds_per_slice: float | None = None

        self.image_panel = ImagePanel()
        self.model_panel = ModelPanel(engine_choice=True)
        self.prompt_panel = PromptPanel()
        self.object_panel = ObjectListPanel()
        self.propagate_panel = PropagatePanel()
        self.auto_panel = AutoPanel()
        self.project_panel = ProjectPanel()
        self.help_panel = ShortcutHelp()
        self.status = QLabel("Load a model and pick an image layer to start.")
        self.status.setWordWrap(True)
        self._stale_timer = QTimer(self)
        self._stale_timer.setSingleShot(True)
        self._stale_timer.timeout.connect(self._clear_stale_message)
        self.segment_runner = JobRunner(parent=self)
        p = self.propagate_panel
        self.propagation_runner = JobRunner(p.progress, p.run_button, p.cancel_button, parent=self)
        self.precompute_panel = PrecomputePanel(self)  # background encoding of nearby slices (issue 15)

        inner = QWidget()
        column = QVBoxLayout(inner)
        for panel in (self.image_panel, self.model_panel, self.prompt_panel, self.object_panel,
                      self.propagate_panel, self.precompute_panel, self.auto_panel, self.project_panel, self.help_panel):
            column.addWidget(panel)
        column.addWidget(self.status)
        column.addStretch(1)
        scroll = QScrollArea()  # the dock stays usable in a short window
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

        self._connect_panels()
        self.auto = AutoSegment(self, self.auto_panel)
        self._connect_project()
        self.reference_panel = ReferenceDicePanel(self)  # per-object Dice against a reference layer
        column.insertWidget(column.indexOf(self.project_panel), self.reference_panel)
        models = self.context.models
        models.acquire(self)
        self.connections.connect(self.viewer, models.changed, self._on_shared_model)
        self.model_panel.model_loaded.connect(models.set_model)
        self.connections.connect(self.viewer, models.checkpoint_offered, self.model_panel.add_checkpoint)
        if models.checkpoints:  # a fine-tuned checkpoint offered before this dock opened
            self.model_panel.add_checkpoint(*models.checkpoints[-1])
        self.model_panel.message.connect(self.show_error)
        self.connections.connect(self.viewer, self.viewer.layers.events.inserted, self._on_layers_inserted)
        self.connections.connect(self.viewer, self.viewer.layers.events.removed, self._on_layers_removed)
        self._bind_keys(self.viewer, self.viewer)
        if models.model is not None:
            self._on_shared_model(models.model, models.description)
        self._refresh_images()

    def _connect_panels(self) -> None:
        self.image_panel.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.image_panel.axis_combo.currentIndexChanged.connect(self._on_axis_changed)
        p = self.prompt_panel
        p.object_spin.valueChanged.connect(self._on_object_changed)
        p.new_object_button.clicked.connect(self.new_object)
        p.negative_button.toggled.connect(lambda _: p.update_mode_label())
        p.points_button.clicked.connect(self.start_points)
        p.box_button.clicked.connect(self.start_box)
        p.mask_button.clicked.connect(self.use_label_as_mask)
        p.segment_button.clicked.connect(lambda: self.update_prompts(force_slice=True))
        p.clear_button.clicked.connect(self.clear_object_prompts)
        p.clear_slice_button.clicked.connect(self.clear_slice_prompts)
        p.commit_button.clicked.connect(self.commit_object)
        p.undo_button.clicked.connect(self.undo)
        p.redo_button.clicked.connect(self.redo)
        o = self.object_panel
        o.selected.connect(self.prompt_panel.object_spin.setValue)
        o.renamed.connect(self.rename_object)
        o.visibility_changed.connect(self.set_object_hidden)
        o.delete_requested.connect(self.delete_object)
        self.propagate_panel.run_button.clicked.connect(self.propagate)
        self.propagate_panel.view_axis_combo.currentIndexChanged.connect(self._on_view_axis_changed)
        self.propagate_panel.cancel_button.clicked.connect(self.cancel)
        self.model_panel.size_combo.currentTextChanged.connect(lambda _: self.model_panel.update_speed_hint())

    # -- state ----------------------------------------------------------------------
    @property
    def state(self) -> ImageAnnotation:
        """The annotation of the current image (an empty one when there is none)."""
        return self._current if self._current is not None else self._blank

    @property
    def model(self) -> Any:
        """The model shared by the viewer's docks (None until one is loaded)."""
        return self.context.models.model

    # -- messages -------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self._stale_timer.stop()
        self._busy_since = None
        self.status.setText(f"<span style='color:#ff6060'>\u26a0 {message}</span>")
        show_error(message)

    def show_info(self, message: str, ann: ImageAnnotation | None = None, stale_after_s: float | None = None) -> None:
        """Show ``message``; it belongs to ``ann`` (cleared when another image is shown) and,
        with ``stale_after_s``, is replaced by a hint once it no longer describes the screen."""
        self._message_ann = ann
        self._busy_since = None
        self.status.setText(message)
        if stale_after_s:
            self._stale_timer.start(int(1000 * stale_after_s))
        else:
            self._stale_timer.stop()

    def show_busy(self, what: str, ann: ImageAnnotation, per_slice: bool = False, n: int = 1) -> None:
        """Say what runs, with the expected time from the slices measured so far."""
        device = str(getattr(self.model, "device", "cpu"))
        if self._seconds_per_slice is None:
            eta = f"the first slice also computes the image embedding; on {device} that takes a few seconds"
        else:
            eta = f"about {self._seconds_per_slice * max(n, 1):.1f} s on {device}"
        self.show_info(f"\u23f3 {what}... ({eta})", ann)
        self._busy_since = time.perf_counter()
        self._busy_slices = max(n, 1)

    def note_job_time(self) -> None:
        """Update the per-slice time estimate from the job that just ended."""
        if self._busy_since is not None:
            took = (time.perf_counter() - self._busy_since) / self._busy_slices
            old = self._seconds_per_slice
            self._seconds_per_slice = took if old is None else 0.5 * (old + took)

    def _clear_stale_message(self) -> None:
        self.status.setText("Click on the image to add a prompt; Shift+P propagates.")

    # -- model ----------------------------------------------------------------------
    def set_model(self, model: Any, description: str = "") -> None:
        """Use ``model`` in every dock of this viewer (a new model starts new sessions)."""
        self.context.models.set_model(model, description)

    def _on_shared_model(self, model: Any, description: str) -> None:
        # (the viewer context has already ended every session built on the old model)
        self.model_panel.show_shared(model, description)
        if model is None:
            self.show_info("The model was freed: load one to continue.")
        else:
            self.show_info(f"Model ready: {description}. Click on the image to segment.")

    # -- images and their annotations -----------------------------------------------
    def _image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_images(self, *_: Any) -> None:
        self.image_panel.set_images(self._image_layers())

    def _on_layers_inserted(self, event: Any) -> None:
        self._refresh_images()

    def _on_layers_removed(self, event: Any) -> None:
        layer = event.value
        annotations = self.context.annotations
        for uid, ann in list(annotations.items()):
            if layer is ann.image_layer:
                self.stop_jobs_of(ann, f"its image layer '{layer.name}' was deleted")
                self._forget(ann)
                if ann is self._current:
                    self._current = None
                del annotations[uid]
            elif layer in ann.layers:
                self.stop_jobs_of(ann, f"its layer '{layer.name}' was deleted")
                for attr in ("labels_layer", "points_layer", "shapes_layer", "committed_layer"):
                    if getattr(ann, attr) is layer:
                        setattr(ann, attr, None)
                self._forget(ann)
        self._create_on_switch = False  # a deletion never makes layers for another image
        try:
            self._refresh_images()
        finally:
            self._create_on_switch = True

    def _forget(self, ann: ImageAnnotation) -> None:
        """Disconnect the dock from an annotation's layers (they are made or found again when needed)."""
        self.connections.release(ann)
        self._adopted.discard(id(ann))

    def _annotation_for(self, image: Any) -> ImageAnnotation:
        annotations = self.context.annotations
        uid = str(image.unique_id)
        if uid not in annotations:
            annotations[uid] = ImageAnnotation(image_layer=image)
        return annotations[uid]

    def _on_image_changed(self, *_: Any) -> None:
        layer = self.image_panel.current_image()
        if layer is None:
            self._current = None
            self.image_panel.set_axes([], [])
            self.propagate_panel.show_view_axis(None)
            return
        try:
            choices = stack_axis_choices(layer.data.shape, layer.rgb)
        except ValueError as err:
            self.image_panel.set_axes([], [])
            self._current = None
            self.propagate_panel.show_view_axis(None)
            self.show_error(str(err))
            return
        labels = [str(x) for x in getattr(layer, "axis_labels", ())]
        # napari's default labels are "-3", "-2", ...: only show names a user gave
        names = [labels[a] if a < len(labels) and not labels[a].lstrip("-").isdigit() else "" for a in choices]
        self.image_panel.set_axes(
            choices, [f"{name} ({layer.data.shape[a]} slices)".strip() for a, name in zip(choices, names)])
        self.propagate_panel.set_slice_count(layer.data.shape[self.image_panel.stack_axis()])
        ann = self._annotation_for(layer)
        previous, self._current = self._current, ann
        self._show_view_axis()
        if self._create_on_switch or ann.labels_layer is not None or find_layer(self.viewer, layer, "labels"):
            self._ensure_layers(ann)
        if previous is not ann and self._message_ann is not ann:
            self.show_info(f"Working on '{layer.name}'.")
        self.objects_changed()

    def _ensure_layers(self, ann: ImageAnnotation) -> None:
        """Make sure ``ann`` has its layers and that this dock listens to them."""
        if ensure_layers(self.viewer, ann):
            ann.reset_session()
        if id(ann) in self._adopted:
            return
        self._adopted.add(id(ann))
        c = self.connections
        c.connect(ann, ann.labels_layer.events.selected_label, lambda *_: self._on_selected_label(ann))
        c.connect(ann, ann.labels_layer.events.paint, lambda _: self._on_paint(ann))
        on_press = install_polarity_callback(ann.points_layer, self.prompt_panel.negative_button.isChecked,
                                             self.prompt_panel.object_spin.value, install=False)
        c.add_mouse_callback(ann, ann.points_layer, on_press)
        for layer in (ann.points_layer, ann.shapes_layer):
            c.connect(ann, layer.events.data, lambda event: self._on_prompt_layer_data(event, ann))
        for layer in (ann.labels_layer, ann.points_layer, ann.shapes_layer):
            self._bind_keys(ann, layer)
        ann.labels_layer.selected_label = self.prompt_panel.object_spin.value()

    def _on_paint(self, ann: ImageAnnotation) -> None:
        ann.history.push(EXTERNAL)
        ann.label_ids = None  # a stroke may add or erase any id: rescan when the list is next shown

    def _bind_keys(self, owner: Any, target: Any) -> None:
        actions = {
            Shortcut.SEGMENT: lambda: self.update_prompts(force_slice=True),
            Shortcut.PROPAGATE: self.propagate,
            Shortcut.NEW_OBJECT: self.new_object,
            Shortcut.TOGGLE: self.toggle_polarity,
            Shortcut.CLEAR_SLICE: self.clear_slice_prompts,
            Shortcut.COMMIT: self.commit_object,
            Shortcut.UNDO: self.undo,
            Shortcut.REDO: self.redo,
        }
        for shortcut, action in actions.items():
            self.connections.bind_key(owner, target, shortcut.key, lambda *_, a=action: a())

    def _on_axis_changed(self, *_: Any) -> None:
        self.state.reset_session()
        if self.state.image_layer is not None:
            self.propagate_panel.set_slice_count(self.state.image_layer.data.shape[self.image_panel.stack_axis()])

    # -- closing (see DockLifecycle) ------------------------------------------------
    def teardown(self) -> None:
        """Cancel the jobs and disconnect every viewer event, key binding and mouse callback."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self.propagation_runner.cancel("the dock was closed")
        self.segment_runner.cancel("the dock was closed")
        self.precompute_panel.teardown()
        self.model_panel.cancel()
        self._stop_autosave()
        self.connections.release_all()
        self._adopted.clear()
        self.context.models.release(self)
