"""Prompts, objects, commit and undo of the segment dock (the user's actions, not the model work).

:class:`SegmentPrompts` is mixed into
:class:`~napari_sam2med._qt.segment_widget.SegmentWidget`; everything acts on the
current image's :class:`~.segment_state.ImageAnnotation` (``self.state``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .label_edits import EditGroup
from .prompt_layers import collect_prompts, recolor_boxes, recolor_points, remove_prompts
from .segment_layers import make_layer
from .segment_state import ImageAnnotation, ObjectInfo, desired_prompts, sync_session, undo_step
from .stack_geometry import StackGeometry, stack_axis_choices


class SegmentPrompts:
    """User actions of the segment dock (see the module docstring)."""

    # -- session --------------------------------------------------------------------
    def _current_geometry(self) -> StackGeometry:
        image = self.state.image_layer
        point = image.world_to_data(np.asarray(self.viewer.dims.point)[-image.ndim:])
        return StackGeometry.from_layer(image.data.shape, image.rgb, self.image_panel.stack_axis(), point,
                                        axis_view=self._axis_view())

    def current_slice(self) -> int:
        """Index of the displayed slice along the stack axis."""
        image = self.state.image_layer
        point = image.world_to_data(np.asarray(self.viewer.dims.point)[-image.ndim:])
        return self._current_geometry().slice_of(point)

    def current_object(self) -> int:
        return int(self.prompt_panel.object_spin.value())

    def _ensure_session(self) -> bool:
        """Check inputs and build the session if needed; show an error and return False if not possible."""
        from ..engine import Session
        from ..io import FrameStack

        image = self.image_panel.current_image()
        if image is None:
            self.show_error("no image layer: open a 3D volume or a 2D+t movie first")
            return False
        try:
            stack_axis_choices(image.data.shape, image.rgb)
            if image is not self.state.image_layer:
                self._on_image_changed()
            self._ensure_layers(self.state)
            geometry = self._current_geometry()
        except ValueError as err:
            self.show_error(str(err))
            return False
        ann, model = self.state, self.model
        if model is None:
            self.show_error("no model loaded: choose a model and press 'Load model'")
            return False
        if self.viewer.dims.ndisplay != 2:
            self.show_error("switch the viewer to 2D to place prompts and segment")
            return False
        key = (geometry, id(model), self.model_panel.engine())  # a new engine choice: a new session
        if ann.session is None or ann.session_key != key:
            if self._propagation is not None and self._propagation.ann is ann:
                self.show_error("a propagation is running: wait for it or cancel it")
                return False
            window = None if image.rgb else tuple(float(c) for c in image.contrast_limits)
            data = image.data[0] if image.multiscale else image.data
            if geometry.axis_view is not None:  # a 3D volume seen along another axis (issue 16)
                stack = FrameStack(data, window=window, name=image.name,
                                   geometry=image.metadata.get("geometry")).along(geometry.axis_view.axis)
            else:
                stack = FrameStack(geometry.frames(data), window=window, name=image.name)
            ann.session = Session(model, stack, engine=self.model_panel.engine())
            ann.session_key, ann.geometry, ann.synced = key, geometry, {}
        return True

    # -- prompts --------------------------------------------------------------------
    def _on_prompt_layer_data(self, event: Any, ann: ImageAnnotation) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.endswith("ing"):  # ADDING / REMOVING / CHANGING: wait for the final event
            return
        from .object_list import object_color

        color_of = lambda o: object_color(ann.labels_layer, o)  # noqa: E731
        if ann.points_layer is not None:
            recolor_points(ann.points_layer, color_of)
        recolor_boxes(ann.shapes_layer, color_of)
        if not self._syncing and ann is self._current:
            self.update_prompts()

    def update_prompts(self, force_slice: bool = False) -> None:
        """Send the layers' prompts to the session and segment the slices whose prompts changed."""
        if self._closed or not self._ensure_session():
            return
        ann = self.state
        try:
            prompts = collect_prompts(ann.points_layer, ann.shapes_layer, ann.geometry)
            changed = sync_session(ann.session, desired_prompts(prompts, ann.mask_prompts), ann.synced)
        except ValueError as err:
            self.show_error(str(err))
            return
        # a fresh session gets every prompt, but only slices whose prompts changed since the
        # labels were written are segmented again (a reload never overwrites the user's labels)
        shown = dict(ann.synced) if ann.shown is None else ann.shown
        changed = [k for k in changed if shown.get(k) != ann.synced.get(k)]
        ann.shown = dict(ann.synced)
        pending = self._pending.setdefault(ann, {})
        for obj_id, slice_idx in changed:
            removed = pending.setdefault(slice_idx, set())
            if (obj_id, slice_idx) not in ann.synced:
                removed.add(obj_id)
        if force_slice:
            pending.setdefault(self.current_slice(), set())
        self._run_next_segment()
        self.objects_changed()

    def start_points(self) -> None:
        if not self._layers_for_action():
            return
        self.viewer.layers.selection.active = self.state.points_layer
        self.state.points_layer.mode = "add"

    def start_box(self) -> None:
        if not self._layers_for_action():
            return
        self.state.shapes_layer.feature_defaults = {"obj_id": self.current_object()}
        self.viewer.layers.selection.active = self.state.shapes_layer
        self.state.shapes_layer.mode = "add_rectangle"

    def _layers_for_action(self) -> bool:
        if self.state.image_layer is None:
            self.show_error("no image layer: open a 3D volume or a 2D+t movie first")
            return False
        self._ensure_layers(self.state)
        return True

    def toggle_polarity(self) -> None:
        """Switch plain clicks between positive and negative."""
        p = self.prompt_panel
        (p.positive_button if p.negative_button.isChecked() else p.negative_button).setChecked(True)

    def use_label_as_mask(self) -> None:
        """Use the current object's pixels on the current slice of the Labels layer as its prompt."""
        if not self._ensure_session():
            return
        ann, obj = self.state, self.current_object()
        slice_idx = self.current_slice()
        mask = np.asarray(ann.labels_layer.data[ann.geometry.full_index(slice_idx)]) == obj
        if not mask.any():
            return self.show_error(f"object {obj} has no pixels on slice {slice_idx}: paint it first")
        self._remove_layer_prompts(obj, slice_idx)
        ann.mask_prompts[(obj, slice_idx)] = mask
        self.update_prompts()

    def _forget_prompts(self, ann, obj: int, remove_object: bool) -> None:
        """Drop an object's prompts everywhere: points/boxes layers, mask prompts, the session (its
        prompts only, or the whole object) and the record of what the session has seen."""
        self._remove_layer_prompts(obj, None)
        for key in [k for k in ann.mask_prompts if k[0] == obj]:
            del ann.mask_prompts[key]
        if ann.session is not None:
            if remove_object:
                ann.session.remove_object(obj)
            else:
                ann.session.clear_prompts(obj)
            for key in [k for k in ann.synced if k[0] == obj]:
                del ann.synced[key]

    def clear_object_prompts(self) -> None:
        """Delete every prompt of the current object (its labels stay)."""
        ann, obj = self.state, self.current_object()
        self._forget_prompts(ann, obj, remove_object=False)
        self.show_info(f"Prompts of {self.object_name(ann, obj)} cleared (its labels are kept).", ann)
        self.objects_changed()

    def clear_slice_prompts(self) -> None:
        """Delete the current object's prompts on the current slice (its mask there goes too)."""
        ann, obj = self.state, self.current_object()
        if ann.image_layer is None or ann.points_layer is None:
            return
        slice_idx = self.current_slice()
        ann.mask_prompts.pop((obj, slice_idx), None)
        self._remove_layer_prompts(obj, slice_idx)
        self.update_prompts()
        self.show_info(f"Prompts of {self.object_name(ann, obj)} on slice {slice_idx} cleared.", ann)

    def _remove_layer_prompts(self, obj: int, slice_idx: int | None) -> None:
        ann = self.state
        geometry = ann.geometry or (self._current_geometry() if ann.image_layer is not None else None)
        self._syncing = True  # one sync afterwards, not one per removed point
        try:
            remove_prompts(ann.points_layer, ann.shapes_layer, geometry, obj, slice_idx)
        finally:
            self._syncing = False

    # -- objects --------------------------------------------------------------------
    def object_name(self, ann: ImageAnnotation, obj_id: int) -> str:
        info = ann.objects.get(obj_id)
        return f"'{info.name}'" if info is not None and info.name else f"object {obj_id}"

    def _on_object_changed(self, value: int) -> None:
        ann = self.state
        if ann.labels_layer is not None and ann.labels_layer.selected_label != value:
            ann.labels_layer.selected_label = value
        if ann.shapes_layer is not None:
            ann.shapes_layer.feature_defaults = {"obj_id": value}
        if ann.points_layer is not None:
            defaults = ann.points_layer.feature_defaults
            ann.points_layer.feature_defaults = {"positive": bool(defaults["positive"][0]), "obj_id": value}
        self.object_panel.select(value)

    def _on_selected_label(self, ann: ImageAnnotation) -> None:
        value = int(ann.labels_layer.selected_label)
        if ann is self._current and value > 0 and value != self.current_object():
            self.prompt_panel.object_spin.setValue(value)

    def new_object(self) -> int:
        """Select a fresh object id (one above every id in the labels, prompts and object list)."""
        ann = self.state
        used = [o for o, _ in ann.synced] + [o for o, _ in ann.mask_prompts] + list(ann.objects)
        for layer in (ann.labels_layer, ann.committed_layer):
            if layer is not None:
                used.append(int(np.max(layer.data)))
        for layer in (ann.points_layer, ann.shapes_layer):
            if layer is not None and len(layer.data):
                used.append(int(np.max(layer.features["obj_id"])))
        new_id = max(used, default=0) + 1
        ann.objects.setdefault(new_id, ObjectInfo())
        self.prompt_panel.object_spin.setValue(new_id)
        self.objects_changed()
        return new_id

    def rename_object(self, obj_id: int, name: str) -> None:
        self.state.objects.setdefault(obj_id, ObjectInfo()).name = name.strip()
        self.objects_changed()

    def set_object_hidden(self, obj_id: int, hidden: bool) -> None:
        """Hide an object: its labels are not shown and it is left out of propagation."""
        ann = self.state
        ann.objects.setdefault(obj_id, ObjectInfo()).hidden = hidden
        if ann.labels_layer is not None:
            from .object_list import show_only_visible

            show_only_visible(ann.labels_layer, {o for o, i in ann.objects.items() if i.hidden})
        self.objects_changed()

    def delete_object(self, obj_id: int) -> None:
        """Remove an object's labels (one undoable step), prompts and name."""
        ann = self.state
        if ann.labels_layer is None:
            return
        if self.propagation_runner.busy:
            return self.show_error("cannot delete an object while a propagation runs: cancel it first")
        group = EditGroup(f"delete {self.object_name(ann, obj_id)}")
        data = ann.labels_layer.data
        zs = np.flatnonzero((np.asarray(data) == obj_id).reshape(data.shape[0], -1).any(axis=1))
        for z in zs:
            before = np.asarray(data[z])
            group.record((int(z),), before, np.where(before == obj_id, 0, before))
            data[int(z)] = group.edits[-1].after
        ann.history.push(group)
        ann.labels_layer.refresh()
        self._forget_prompts(ann, obj_id, remove_object=True)
        ann.objects.pop(obj_id, None)
        ann.propagated.pop(obj_id, None)
        if ann.label_ids is not None:
            ann.label_ids.discard(obj_id)
        self.show_info(f"Deleted {group.title[7:]}: {len(zs)} slices cleared (Ctrl+Z brings the labels back).", ann)
        self.objects_changed()

    def objects_changed(self) -> None:
        """Refresh the object list from the current annotation."""
        from .object_list import object_rows

        self.object_panel.set_rows(object_rows(self.state), self.current_object())

    # -- commit -----------------------------------------------------------------------
    def commit_object(self) -> None:
        """Accept the current object: copy its labels into the committed layer.

        Segmentation and propagation write only into the working labels layer, so the
        committed layer changes only here, and a later commit fills only pixels that
        are still free there: committed pixels are never overwritten unless the user
        edits the committed layer by hand.
        """
        ann, obj = self.state, self.current_object()
        if ann.labels_layer is None:
            return self.show_error("nothing to commit: segment an object first")
        mask = np.asarray(ann.labels_layer.data) == obj
        if not mask.any():
            return self.show_error(f"{self.object_name(ann, obj)} has no labels to commit")
        if ann.committed_layer is None or ann.committed_layer not in self.viewer.layers:
            current = self.viewer.layers.selection.active
            ann.committed_layer = make_layer(self.viewer, ann.image_layer, "committed")
            if current is not None:
                self.viewer.layers.selection.active = current
        committed = ann.committed_layer.data
        free = mask & (np.asarray(committed) == 0)
        committed[free] = obj
        ann.committed_layer.refresh()
        self.show_info(f"Committed {self.object_name(ann, obj)}: {int(free.sum())} pixels in "
                       f"'{ann.committed_layer.name}' (later work never overwrites them).", ann)
        self.objects_changed()

    # -- undo -----------------------------------------------------------------------
    def undo(self) -> None:
        """Undo the last click, propagation, deletion or paint stroke on the labels layer."""
        self._undo_redo(undo=True)

    def redo(self) -> None:
        self._undo_redo(undo=False)

    def _undo_redo(self, undo: bool) -> None:
        if self.propagation_runner.busy:
            return self.show_error("cannot undo while a propagation runs: cancel it first")
        if self.state.labels_layer is None:
            return
        self.show_info(undo_step(self.state, undo), self.state)
        self.state.label_ids = None  # rescan once: an undo can bring back or remove any id
        self.objects_changed()

