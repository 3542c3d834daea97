"""Propagation axis: view a ``(Z, Y, X)`` volume as axial, coronal or sagittal slices, and back.

A volume is always stored and written in its original voxel order. To propagate
along another axis, :meth:`FrameStack.along` wraps the data in a lazy transposed
view (``AxisView``): frame ``i`` of the view is the plane at index ``i`` of the
chosen voxel axis, with the two other axes as ``(row, col)`` in their original
order. Labels computed in the view go back with :meth:`AxisView.to_original`.

Which voxel axis is "axial" comes from the geometry: the one closest to the
patient's superior-inferior direction (coronal: anterior-posterior; sagittal:
left-right). Without a geometry the usual storage is assumed: axis 0 = axial,
1 = coronal, 2 = sagittal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np


class Axis(str, Enum):
    """Anatomical direction to propagate along (slices are perpendicular to it)."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


AXIS_NAMES = tuple(a.value for a in Axis)
#: RAS world axis each anatomical slice direction runs along (axial slices stack along S, ...).
_WORLD_AXIS = {Axis.AXIAL: 2, Axis.CORONAL: 1, Axis.SAGITTAL: 0}
#: Voxel axis per direction when the volume has no geometry.
_DEFAULT_VOXEL_AXIS = {Axis.AXIAL: 0, Axis.CORONAL: 1, Axis.SAGITTAL: 2}


def parse_axis(axis: Any) -> Axis:
    """``Axis`` from a name (``"axial"``, ``"coronal"``, ``"sagittal"``) or an ``Axis``."""
    try:
        return Axis(str(getattr(axis, "value", axis)).lower())
    except ValueError:
        raise ValueError(f"axis must be one of {', '.join(AXIS_NAMES)}, got {axis!r}") from None


def voxel_axis(axis: Any, geometry: Any = None) -> int:
    """The voxel axis (0, 1 or 2 of ``(Z, Y, X)``) that runs along an anatomical direction.

    Parameters
    ----------
    axis : Axis or str
        ``axial``, ``coronal`` or ``sagittal``.
    geometry : Geometry, optional
        Source geometry; ``None`` assumes axial storage (axis 0 axial, 1 coronal, 2 sagittal).
    """
    axis = parse_axis(axis)
    if geometry is None:
        return _DEFAULT_VOXEL_AXIS[axis]
    directions = geometry.affine[:3, :3] / np.asarray(geometry.spacing)
    # Assign world axes to voxel axes one to one, the most aligned pair first (handles oblique scans).
    weights = np.abs(directions)  # [world, voxel]
    assignment: dict[int, int] = {}
    for flat in np.argsort(-weights, axis=None):
        world, vox = divmod(int(flat), 3)
        if world not in assignment and vox not in assignment.values():
            assignment[world] = vox
    return assignment[_WORLD_AXIS[axis]]


def napari_dims_order(axis: Any) -> tuple[int, int, int]:
    """``viewer.dims.order`` that shows slices perpendicular to ``axis`` in napari.

    Our readers place volumes in the napari world ``(S, P, L)``
    (:mod:`napari_sam2med.io.geometry`), so the slider of world axis 0 steps
    through axial slices, axis 1 coronal and axis 2 sagittal, whatever the
    storage order. Plain ``(Z, Y, X)`` layers without geometry follow the same
    default (axis 0 axial).
    """
    first = _DEFAULT_VOXEL_AXIS[parse_axis(axis)]
    return (first, *(a for a in range(3) if a != first))


class TransposedArray:
    """Lazy ``(N, A, B)`` view of a 3D array-like with ``order`` as its axes.

    Reading one frame indexes the source along ``order[0]``. numpy arrays
    (memory-mapped ``.npy`` included) are indexed in place; every other source
    (our ``LazySlices`` for NIfTI/DICOM, zarr/TIFF chunked one slice per chunk,
    dask) is read whole once on first use, because a plane across the stored
    slices touches every chunk: re-reading them for every frame would cost
    ``N`` times the volume.
    """

    def __init__(self, data: Any, order: tuple[int, int, int]) -> None:
        self._data = data
        self._order = tuple(int(o) for o in order)
        self.shape = tuple(int(data.shape[o]) for o in self._order)
        self.dtype = np.dtype(data.dtype)
        self._cache: np.ndarray | None = None

    ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def _source(self) -> Any:
        if isinstance(self._data, np.ndarray):
            return self._data
        if self._cache is None:
            self._cache = np.asarray(self._data[:])
        return self._cache

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        source = self._source()
        if len(key) >= 1 and isinstance(key[0], (int, np.integer)) and not isinstance(key[0], bool):
            index: list[Any] = [slice(None)] * 3
            index[self._order[0]] = int(key[0])
            plane = np.asarray(source[tuple(index)])
            rest = [o - (o > self._order[0]) for o in self._order[1:]]
            plane = plane.transpose(rest)
            return plane[key[1:]] if len(key) > 1 else plane
        return np.asarray(source).transpose(self._order)[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = np.asarray(self._source()).transpose(self._order)
        return values if dtype is None else values.astype(dtype)


@dataclass(frozen=True)
class AxisView:
    """How a view's frames relate to the original voxel order.

    Attributes
    ----------
    axis : Axis
        Anatomical direction propagated along.
    order : tuple of int
        Original voxel axes in view order: ``view = original.transpose(order)``.
    """

    axis: Axis
    order: tuple[int, int, int]

    @classmethod
    def for_axis(cls, axis: Any, geometry: Any = None) -> "AxisView":
        """View whose frames are perpendicular to ``axis`` (other axes keep their order)."""
        axis = parse_axis(axis)
        first = voxel_axis(axis, geometry)
        rest = tuple(a for a in range(3) if a != first)
        return cls(axis, (first, *rest))

    @property
    def identity(self) -> bool:
        return self.order == (0, 1, 2)

    @property
    def voxel_axis(self) -> int:
        """Original voxel axis the frames step along."""
        return self.order[0]

    def to_view(self, array: Any) -> Any:
        """An original-order array seen in view order (lazy for array-likes)."""
        return array if self.identity else TransposedArray(array, self.order)

    def to_original(self, labels: Any) -> np.ndarray:
        """Labels computed in view order, back in the original voxel order."""
        values = np.asarray(labels)
        if values.ndim != 3:
            raise ValueError(f"labels must be 3D (N, Y, X), got shape {values.shape}")
        return values if self.identity else np.ascontiguousarray(values.transpose(np.argsort(self.order)))

    def point_to_view(self, zyx: Any) -> np.ndarray:
        """Original voxel coordinates ``(..., 3)`` -> view ``(slice, row, col)``."""
        return np.asarray(zyx, dtype=np.float64)[..., list(self.order)]

    def point_to_original(self, slice_row_col: Any) -> np.ndarray:
        """View ``(slice, row, col)`` ``(..., 3)`` -> original voxel coordinates."""
        return np.asarray(slice_row_col, dtype=np.float64)[..., list(np.argsort(self.order))]

    def original_shape(self, view_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Shape in original voxel order of a view-ordered shape."""
        out = [0, 0, 0]
        for view_ax, orig_ax in enumerate(self.order):
            out[orig_ax] = int(view_shape[view_ax])
        return tuple(out)
