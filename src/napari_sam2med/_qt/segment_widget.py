"""The main dock widget: click to segment a slice, then propagate through the stack.

All model work runs in napari thread workers; results are written into the
Labels layer on the main thread, one whole slice at a time, and every write
is undoable (one undo step per click or per propagation run). The worker side
(slice queue, propagation, cancel) lives in :mod:`.segment_jobs`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from .label_edits import EXTERNAL, EditGroup
from .model_panel import ModelPanel
from .prompt_layers import (
    collect_prompts, install_polarity_callback, make_points_layer, make_shapes_layer, recolor_points,
    remove_prompts,
)
from .segment_jobs import SegmentJobsMixin
from .segment_panels import ImagePanel, PromptPanel, PropagatePanel
from .segment_state import SegmentationState, desired_prompts, sync_session, undo_step
from .stack_geometry import StackGeometry, stack_axis_choices

UNDO_KEYS = ("Control-Z", "Control-Shift-Z")


class SegmentWidget(SegmentJobsMixin, QWidget):
    """SAM2 segment & propagate.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it by this name).
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = SegmentationState()
        self._segment_worker = None
        self._propagation_worker = None
        self._propagation_group: EditGroup | None = None
        self._pending: dict[int, set[int]] = {}  # slice -> object ids whose prompts vanished there
        self._syncing = False

        self.image_panel = ImagePanel()
        self.model_panel = ModelPanel()
        self.prompt_panel = PromptPanel()
        self.propagate_panel = PropagatePanel()
        self.status = QLabel("Load a model and pick an image layer to start.")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        for panel in (self.image_panel, self.model_panel, self.prompt_panel, self.propagate_panel):
            layout.addWidget(panel)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.model_panel.model_loaded.connect(self.set_model)
        self.model_panel.message.connect(self.show_error)
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
        p.undo_button.clicked.connect(self.undo)
        p.redo_button.clicked.connect(self.redo)
        self.propagate_panel.run_button.clicked.connect(self.propagate)
        self.propagate_panel.cancel_button.clicked.connect(self.cancel)

        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._bind_undo_keys(self.viewer)
        self._refresh_images()

    # -- messages -------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"<span style='color:#ff6060'>\u26a0 {message}</span>")
        show_error(message)

    def show_info(self, message: str) -> None:
        self.status.setText(message)

    # -- model ----------------------------------------------------------------------
    def set_model(self, model: Any, description: str = "") -> None:
        """Use ``model`` from now on (a new model starts a new session)."""
        self.state.model, self.state.model_text = model, description
        self.state.reset_session()
        self.show_info(f"Model ready: {description}. Click on the image to segment.")

    # -- image / axes ---------------------------------------------------------------
    def _image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_images(self, *_: Any) -> None:
        self.image_panel.set_images(self._image_layers())

    def _on_image_changed(self, *_: Any) -> None:
        layer = self.image_panel.current_image()
        self.state.reset_session()
        if layer is None:
            self.image_panel.set_axes([], [])
            return
        try:
            choices = stack_axis_choices(layer.data.shape, layer.rgb)
        except ValueError as err:
            self.image_panel.set_axes([], [])
            self.state.image_layer = None
            self.show_error(str(err))
            return
        labels = [str(x) for x in getattr(layer, "axis_labels", ())]
        # napari's default labels are "-3", "-2", ...: only show names a user gave
        names = [labels[a] if a < len(labels) and not labels[a].lstrip("-").isdigit() else "" for a in choices]
        self.image_panel.set_axes(
            choices, [f"{name} ({layer.data.shape[a]} slices)".strip() for a, name in zip(choices, names)])
        self.propagate_panel.set_slice_count(layer.data.shape[self.image_panel.stack_axis()])
        if layer is not self.state.image_layer:
            self.state.image_layer = layer
            self._make_layers(layer)

    def _on_axis_changed(self, *_: Any) -> None:
        self.state.reset_session()
        if self.state.image_layer is not None:
            self.propagate_panel.set_slice_count(self.state.image_layer.data.shape[self.image_panel.stack_axis()])

    def _make_layers(self, image: Any) -> None:
        """Create this image's Labels, Points and Shapes layers (kept on the image's scale)."""
        shape = tuple(image.data.shape[:-1] if image.rgb else image.data.shape)
        viewer, state = self.viewer, self.state
        current = self.viewer.layers.selection.active
        state.labels_layer = viewer.add_labels(
            np.zeros(shape, np.int32), name=f"{image.name} SAM2 labels",
            scale=tuple(image.scale), translate=tuple(image.translate), opacity=0.5,
        )
        state.points_layer = make_points_layer(viewer, image, f"{image.name} SAM2 points")
        state.shapes_layer = make_shapes_layer(viewer, image, f"{image.name} SAM2 boxes")
        state.history.clear()
        state.mask_prompts.clear()
        state.labels_layer.selected_label = self.prompt_panel.object_spin.value()
        state.labels_layer.events.selected_label.connect(self._on_selected_label)
        state.labels_layer.events.paint.connect(lambda _: state.history.push(EXTERNAL))
        install_polarity_callback(state.points_layer, self.prompt_panel.negative_button.isChecked,
                                  self.prompt_panel.object_spin.value)
        state.points_layer.events.data.connect(self._on_prompt_layer_data)
        state.shapes_layer.events.data.connect(self._on_prompt_layer_data)
        for layer in (state.labels_layer, state.points_layer, state.shapes_layer):
            self._bind_undo_keys(layer)
        if current is not None:
            viewer.layers.selection.active = current

    def _bind_undo_keys(self, target: Any) -> None:
        target.bind_key(UNDO_KEYS[0], lambda *_: self.undo(), overwrite=True)
        target.bind_key(UNDO_KEYS[1], lambda *_: self.redo(), overwrite=True)

    def _current_geometry(self) -> StackGeometry:
        image = self.state.image_layer
        point = image.world_to_data(np.asarray(self.viewer.dims.point)[-image.ndim:])
        return StackGeometry.from_layer(image.data.shape, image.rgb, self.image_panel.stack_axis(), point)

    def current_slice(self) -> int:
        """Index of the displayed slice along the stack axis."""
        image = self.state.image_layer
        point = image.world_to_data(np.asarray(self.viewer.dims.point)[-image.ndim:])
        return self._current_geometry().slice_of(point)

    def _ensure_session(self) -> bool:
        """Check inputs and build the session if needed; show an error and return False if not possible."""
        from ..engine import Session
        from ..io import FrameStack

        state = self.state
        image = self.image_panel.current_image()
        if image is None:
            self.show_error("no image layer: open a 3D volume or a 2D+t movie first")
            return False
        try:
            stack_axis_choices(image.data.shape, image.rgb)
            if image is not state.image_layer:
                self._on_image_changed()
            geometry = self._current_geometry()
        except ValueError as err:
            self.show_error(str(err))
            return False
        if state.model is None:
            self.show_error("no model loaded: choose a model and press 'Load model'")
            return False
        if self.viewer.dims.ndisplay != 2:
            self.show_error("switch the viewer to 2D to place prompts and segment")
            return False
        key = (id(image), geometry, id(state.model))
        if state.session is None or state.session_key != key:
            if self._propagation_worker is not None:
                self.show_error("a propagation is running: wait for it or cancel it")
                return False
            window = None if image.rgb else tuple(float(c) for c in image.contrast_limits)
            data = image.data[0] if image.multiscale else image.data
            stack = FrameStack(geometry.frames(data), window=window, name=image.name)
            state.session = Session(state.model, stack)
            state.session_key, state.geometry, state.synced = key, geometry, {}
        return True

    # -- prompts --------------------------------------------------------------------
    def _on_prompt_layer_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.endswith("ing"):  # ADDING / REMOVING / CHANGING: wait for the final event
            return
        if self.state.points_layer is not None:
            recolor_points(self.state.points_layer)
        if not self._syncing:
            self.update_prompts()

    def update_prompts(self, force_slice: bool = False) -> None:
        """Send the layers' prompts to the session and segment the slices whose prompts changed."""
        if not self._ensure_session():
            return
        state = self.state
        try:
            prompts = collect_prompts(state.points_layer, state.shapes_layer, state.geometry)
            changed = sync_session(state.session, desired_prompts(prompts, state.mask_prompts), state.synced)
        except ValueError as err:
            self.show_error(str(err))
            return
        for obj_id, slice_idx in changed:
            removed = self._pending.setdefault(slice_idx, set())
            if (obj_id, slice_idx) not in state.synced:
                removed.add(obj_id)
        if force_slice:
            self._pending.setdefault(self.current_slice(), set())
        self._run_next_segment()

    def start_points(self) -> None:
        if self.state.points_layer is None:
            return self.show_error("no image layer: open a 3D volume or a 2D+t movie first")
        self.viewer.layers.selection.active = self.state.points_layer
        self.state.points_layer.mode = "add"

    def start_box(self) -> None:
        if self.state.shapes_layer is None:
            return self.show_error("no image layer: open a 3D volume or a 2D+t movie first")
        self.state.shapes_layer.feature_defaults = {"obj_id": self.prompt_panel.object_spin.value()}
        self.viewer.layers.selection.active = self.state.shapes_layer
        self.state.shapes_layer.mode = "add_rectangle"

    def use_label_as_mask(self) -> None:
        """Use the current object's pixels on the current slice of the Labels layer as its prompt."""
        if not self._ensure_session():
            return
        state, obj = self.state, self.prompt_panel.object_spin.value()
        slice_idx = self.current_slice()
        mask = np.asarray(state.labels_layer.data[state.geometry.full_index(slice_idx)]) == obj
        if not mask.any():
            return self.show_error(f"object {obj} has no pixels on slice {slice_idx}: paint it first")
        self._remove_layer_prompts(obj, slice_idx)
        state.mask_prompts[(obj, slice_idx)] = mask
        self.update_prompts()

    def clear_object_prompts(self) -> None:
        """Delete every prompt of the current object (its labels stay)."""
        state, obj = self.state, self.prompt_panel.object_spin.value()
        self._remove_layer_prompts(obj, None)
        for key in [k for k in state.mask_prompts if k[0] == obj]:
            del state.mask_prompts[key]
        if state.session is not None:
            state.session.clear_prompts(obj)
            for key in [k for k in state.synced if k[0] == obj]:
                del state.synced[key]
        self.show_info(f"Prompts of object {obj} cleared (its labels are kept).")

    def _remove_layer_prompts(self, obj: int, slice_idx: int | None) -> None:
        self._syncing = True  # one sync afterwards, not one per removed point
        try:
            remove_prompts(self.state.points_layer, self.state.shapes_layer, self.state.geometry, obj, slice_idx)
        finally:
            self._syncing = False

    # -- objects --------------------------------------------------------------------
    def _on_object_changed(self, value: int) -> None:
        state = self.state
        if state.labels_layer is not None and state.labels_layer.selected_label != value:
            state.labels_layer.selected_label = value
        if state.shapes_layer is not None:
            state.shapes_layer.feature_defaults = {"obj_id": value}
        if state.points_layer is not None:
            defaults = state.points_layer.feature_defaults
            state.points_layer.feature_defaults = {"positive": bool(defaults["positive"][0]), "obj_id": value}

    def _on_selected_label(self, *_: Any) -> None:
        value = int(self.state.labels_layer.selected_label)
        if value > 0 and value != self.prompt_panel.object_spin.value():
            self.prompt_panel.object_spin.setValue(value)

    def new_object(self) -> int:
        """Select a fresh object id (one above every id in the labels and prompts)."""
        state = self.state
        used = [o for o, _ in state.synced] + [o for o, _ in state.mask_prompts]
        if state.labels_layer is not None:
            used.append(int(np.max(state.labels_layer.data)))
        for layer in (state.points_layer, state.shapes_layer):
            if layer is not None and len(layer.data):
                used.append(int(np.max(layer.features["obj_id"])))
        new_id = max(used, default=0) + 1
        self.prompt_panel.object_spin.setValue(new_id)
        return new_id

    # -- undo -----------------------------------------------------------------------
    def undo(self) -> None:
        """Undo the last click, propagation or paint stroke on the labels layer."""
        self._undo_redo(undo=True)

    def redo(self) -> None:
        self._undo_redo(undo=False)

    def _undo_redo(self, undo: bool) -> None:
        state = self.state
        if self._propagation_worker is not None:
            return self.show_error("cannot undo while a propagation runs: cancel it first")
        if state.labels_layer is None:
            return
        self.show_info(undo_step(state, undo))
