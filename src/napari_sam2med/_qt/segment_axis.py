"""Propagation axis of the segment dock (issue 16): axial, coronal or sagittal slices of a 3D volume.

:class:`SegmentAxis` is mixed into
:class:`~napari_sam2med._qt.segment_widget.SegmentWidget`. The choice is kept per
image (``ImageAnnotation.view_axis``). The layers keep the volume's voxel order
``(z, y, x)``; only the session sees the resliced view
(``FrameStack(...).along(axis)``), and :class:`~.stack_geometry.StackGeometry`
(with the view's :class:`~napari_sam2med.io.axes.AxisView`) maps clicks to
``(slice, row, col)`` and each propagated slice back into its plane of the
labels layer.
"""

from __future__ import annotations

from typing import Any

from ..io.axes import AxisView, napari_dims_order

#: First-axis names that mark a 2D+t movie (reslicing across time makes no sense).
TIME_LABELS = frozenset({"t", "time", "frame", "frames"})


def is_gray_volume(image: Any) -> bool:
    """Whether an image layer is a 3D grayscale volume (the only kind that can be resliced).

    A ``(T, Y, X)`` movie is told apart only by its first axis label (``t``, ``time``, ``frame``).
    """
    if image is None or image.rgb or len(image.data.shape) != 3:
        return False
    labels = [str(x).lower() for x in getattr(image, "axis_labels", ())]
    return not (labels and labels[0] in TIME_LABELS)


class SegmentAxis:
    """Axis selector logic (see the module docstring)."""

    def _axis_view(self) -> AxisView | None:
        """How the current image is sliced (``None``: not a 3D grayscale volume)."""
        image = self.state.image_layer
        if not is_gray_volume(image):
            return None
        return AxisView.for_axis(self.state.view_axis, image.metadata.get("geometry"))

    def _show_view_axis(self) -> None:
        """Show the current image's axis in the selector (hidden for RGB, 2D+t and 4D) and its slices."""
        image = self.state.image_layer
        gray = is_gray_volume(image)
        self.propagate_panel.show_view_axis(self.state.view_axis if gray else None)
        if not gray:
            return
        view = self._axis_view()
        self.propagate_panel.set_slice_count(int(image.data.shape[view.voxel_axis]))
        ndim = self.viewer.dims.ndim
        order = tuple(range(ndim - 3)) + tuple(ndim - 3 + a for a in napari_dims_order(view.axis))
        if tuple(self.viewer.dims.order) != order:
            self.viewer.dims.order = order

    def _on_view_axis_changed(self, *_: Any) -> None:
        ann, axis = self.state, self.propagate_panel.view_axis()
        if ann.image_layer is None or axis is None or axis == ann.view_axis:
            return
        # Prompts were placed on slices of the old axis (a box or a mask prompt means nothing
        # on the new ones): the simplest correct rule is to refuse until they are cleared.
        prompted = bool(ann.mask_prompts) or any(
            layer is not None and len(layer.data) for layer in (ann.points_layer, ann.shapes_layer))
        reason = None
        if self.is_busy():
            reason = "wait for the running job (or cancel it) first"
        elif prompted:
            reason = (f"this image has prompts on {ann.view_axis.value} slices; clear them first "
                      "(\"Clear object's prompts\"), the labels stay")
        if reason:
            self.propagate_panel.show_view_axis(ann.view_axis)
            return self.show_error(f"Axis not changed: {reason}.")
        ann.view_axis = axis
        ann.reset_session()
        ann.geometry = None
        self._show_view_axis()
        self.show_info(f"Segmenting and propagating along {axis.value} slices "
                       f"({self.propagate_panel.last_spin.maximum() + 1} slices); labels already "
                       "written are kept.", ann)
