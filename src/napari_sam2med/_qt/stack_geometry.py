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
    """

    shape: tuple[int, ...]
    rgb: bool
    stack_axis: int
    fixed: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_layer(
        cls, data_shape: Sequence[int], rgb: bool, stack_axis: int, point: Sequence[float] = ()
    ) -> "StackGeometry":
        """Build from a layer's data shape and the viewer position in data coordinates."""
        choices = stack_axis_choices(data_shape, rgb)
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
        return self.shape[-2], self.shape[-1]

    def full_index(self, slice_idx: int) -> tuple:
        """Index into the spatial array that selects one ``(Y, X)`` plane."""
        if not 0 <= slice_idx < self.n_slices:
            raise ValueError(f"slice {slice_idx} is outside 0..{self.n_slices - 1}")
        index: list[Any] = [slice(None)] * len(self.shape)
        index[self.stack_axis] = int(slice_idx)
        for axis, value in self.fixed:
            index[axis] = value
        return tuple(index[:-2])

    def slice_of(self, coords: Sequence[float]) -> int:
        """Slice index of a point given in layer data coordinates."""
        return int(np.clip(round(float(coords[self.stack_axis])), 0, self.n_slices - 1))

    def on_this_plane(self, coords: Sequence[float]) -> bool:
        """Whether a point lies on the fixed positions of the non-stack axes."""
        return all(round(float(coords[axis])) == value for axis, value in self.fixed)

    def frames(self, data: Any) -> Any:
        """The layer data as an ``(N, Y, X)`` or ``(N, Y, X, C)`` array-like, read lazily."""
        if not self.fixed and self.stack_axis == 0:
            return data
        from ..io.lazy import LazySlices

        frame_shape = self.frame_shape + ((int(data.shape[-1]),) if self.rgb else ())
        return LazySlices(
            lambda i: np.asarray(data[self.full_index(i)]), self.n_slices, frame_shape, data.dtype
        )
