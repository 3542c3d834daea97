"""Which axis of an image layer is the stack (Z or T), and how to index it.

Pure numpy (no Qt). napari layers may be 3D ``(N, Y, X)``, RGB ``(N, Y, X, C)``
or higher-dimensional (``(T, Z, Y, X)``): the last two spatial axes are
always the image plane; the user picks one leading axis as the stack and the
others stay at the viewer's current position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def spatial_shape(data_shape: Sequence[int], rgb: bool) -> tuple[int, ...]:
    """Layer shape without the colour axis."""
    shape = tuple(int(s) for s in data_shape)
    return shape[:-1] if rgb else shape


def stack_axis_choices(data_shape: Sequence[int], rgb: bool) -> list[int]:
    """Leading axes that can serve as the stack axis.

    Raises
    ------
    ValueError
        For a 2D (or 2D RGB) image, which has no stack to propagate through.
    """
    shape = spatial_shape(data_shape, rgb)
    if len(shape) < 3:
        kind = "2D RGB image" if rgb else "2D image"
        raise ValueError(
            f"the image is a {kind} of shape {tuple(data_shape)}; "
            "choose a 3D volume or a 2D+t movie (N, Y, X)"
        )
    return list(range(len(shape) - 2))


@dataclass(frozen=True)
class StackGeometry:
    """A stack axis within a layer, with the other leading axes held fixed.

    Attributes
    ----------
    shape : tuple of int
        Spatial shape of the layer (no colour axis).
    rgb : bool
        Whether the layer data has a trailing colour axis.
    stack_axis : int
        Axis of ``shape`` that runs over slices/frames.
    fixed : tuple of (int, int)
        ``(axis, index)`` for every other leading axis.
    axis_view : io.axes.AxisView or None
        For a 3D grayscale volume resliced along another anatomical axis (coronal,
        sagittal, ...): how view ``(slice, row, col)`` maps to the layer's ``(z, y, x)``.
        ``None``: the last two axes are the image plane.
    """

    shape: tuple[int, ...]
    rgb: bool
    stack_axis: int
    fixed: tuple[tuple[int, int], ...] = ()
    axis_view: Any = None

    @classmethod
    def from_layer(
        cls, data_shape: Sequence[int], rgb: bool, stack_axis: int, point: Sequence[float] = (),
        axis_view: Any = None,
    ) -> "StackGeometry":
        """Build from a layer's data shape and the viewer position in data coordinates.

        A non-identity ``axis_view`` (3D grayscale only) replaces ``stack_axis`` by its voxel axis.
        """
        choices = stack_axis_choices(data_shape, rgb)
        if axis_view is not None and not axis_view.identity:
            if rgb or len(data_shape) != 3:
                raise ValueError("only 3D grayscale volumes can be propagated along another axis")
            return cls(tuple(int(s) for s in data_shape), False, axis_view.voxel_axis, (), axis_view)
        if stack_axis not in choices:
            raise ValueError(f"stack axis must be one of {choices}, got {stack_axis}")
        shape = spatial_shape(data_shape, rgb)
        fixed = []
        for axis in choices:
            if axis != stack_axis:
                value = int(round(point[axis])) if axis < len(point) else 0
                fixed.append((axis, int(np.clip(value, 0, shape[axis] - 1))))
        return cls(shape, bool(rgb), int(stack_axis), tuple(fixed))

    @property
    def n_slices(self) -> int:
        return self.shape[self.stack_axis]

    @property
    def frame_shape(self) -> tuple[int, int]:
        if self.axis_view is not None:
            return self.shape[self.axis_view.order[1]], self.shape[self.axis_view.order[2]]
        return self.shape[-2], self.shape[-1]

    def full_index(self, slice_idx: int) -> tuple:
        """Index into the spatial array that selects one ``(Y, X)`` plane."""
        if not 0 <= slice_idx < self.n_slices:
            raise ValueError(f"slice {slice_idx} is outside 0..{self.n_slices - 1}")
        index: list[Any] = [slice(None)] * len(self.shape)
        index[self.stack_axis] = int(slice_idx)
        for axis, value in self.fixed:
            index[axis] = value
        return tuple(index) if self.axis_view is not None else tuple(index[:-2])

    def in_plane(self, coords: Any) -> np.ndarray:
        """``(row, col)`` on its slice of points ``(..., ndim)`` given in layer data coordinates."""
        coords = np.asarray(coords, dtype=np.float64)
        if self.axis_view is None:
            return coords[..., -2:]
        return self.axis_view.point_to_view(coords[..., -3:])[..., 1:]

    def slice_of(self, coords: Sequence[float]) -> int:
        """Slice index of a point given in layer data coordinates."""
        return int(np.clip(round(float(coords[self.stack_axis])), 0, self.n_slices - 1))

    def on_this_plane(self, coords: Sequence[float]) -> bool:
        """Whether a point lies on the fixed positions of the non-stack axes."""
        return all(round(float(coords[axis])) == value for axis, value in self.fixed)

    def frames(self, data: Any) -> Any:
        """The layer data as an ``(N, Y, X)`` or ``(N, Y, X, C)`` array-like, read lazily."""
        if self.axis_view is not None:
            return self.axis_view.to_view(data)
        if not self.fixed and self.stack_axis == 0:
            return data
        from ..io.lazy import LazySlices

        frame_shape = self.frame_shape + ((int(data.shape[-1]),) if self.rgb else ())
        return LazySlices(
            lambda i: np.asarray(data[self.full_index(i)]), self.n_slices, frame_shape, data.dtype
        )
