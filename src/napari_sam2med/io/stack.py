"""``FrameStack``: a lazy, slice-addressable view of a 3D (or 3D + colour) volume."""

from __future__ import annotations

from typing import Any

import numpy as np

from .normalize import NAN_POLICIES, check_window, normalize_slice, robust_window

_CHANNEL_COUNTS = (1, 3, 4)


def _as_array_like(data: Any) -> Any:
    """Keep array-likes (numpy, zarr, dask, our lazy arrays) as is; coerce the rest."""
    if all(hasattr(data, attr) for attr in ("shape", "dtype", "__getitem__")):
        return data
    return np.asarray(data)


def _check_dtype(dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        raise ValueError("boolean stacks are not images; convert to uint8 first")
    if dtype.kind == "c":
        raise ValueError(f"complex dtype {dtype} is not supported; take abs() or real first")
    if dtype.kind not in "uif":
        raise ValueError(f"unsupported dtype {dtype}: need an integer or float image")
    return dtype


class FrameStack:
    """A stack of 2D frames read one slice at a time.

    Parameters
    ----------
    data : array-like
        numpy, zarr, dask or any object with ``shape``, ``dtype`` and
        ``__getitem__``; shape ``(N, Y, X)`` or ``(N, Y, X, C)`` with C in {1, 3, 4}.
        Nothing is read at construction.
    channel_axis : int, optional
        Axis holding colour channels. ``None`` means the last axis for 4D
        data and no channels for 3D data. Frames run along the first
        non-channel axis.
    window : tuple of float, optional
        Contrast window ``(lo, hi)`` mapped to 0..1 by :meth:`normalized`.
        ``None``: uint8 maps as ``x / 255``; other dtypes use a robust
        0.5/99.5 percentile window estimated from at most 16 slices.
    name : str, optional
        Display name (e.g. the file stem).
    nan_policy : {"raise", "zero"}
        NaN in a slice read by :meth:`normalized` raises ``ValueError``
        (default) or maps to the window's low end.
    geometry : Geometry, optional
        Placement of the ``(N, Y, X)`` voxels in the scanner (see
        :mod:`napari_sam2med.io.geometry`); readers of NIfTI, DICOM, NRRD and
        MedSAM2 ``.npz`` files fill it in. Writers put labels back in this space.
    """

    def __init__(
        self,
        data: Any,
        *,
        channel_axis: int | None = None,
        window: tuple[float, float] | None = None,
        name: str | None = None,
        nan_policy: str = "raise",
        geometry: Any = None,
    ) -> None:
        data = _as_array_like(data)
        shape = tuple(int(s) for s in data.shape)
        ndim = len(shape)
        if ndim == 2:
            raise ValueError(f"got a single 2D image {shape}; a stack needs shape (N, Y, X)")
        if ndim not in (3, 4):
            raise ValueError(f"stack must be (N, Y, X) or (N, Y, X, C), got shape {shape}")
        if 0 in shape:
            raise ValueError(f"stack is empty: shape {shape}")
        self._dtype = _check_dtype(data.dtype)
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")

        if channel_axis is None:
            channel_axis = 3 if ndim == 4 else None
        elif ndim == 3:
            raise ValueError("channel_axis given but the stack is 3D (N, Y, X) without channels")
        else:
            if not -ndim <= int(channel_axis) < ndim:
                raise ValueError(f"channel_axis {channel_axis} out of range for a 4D stack")
            channel_axis = int(channel_axis) % ndim
        spatial = [ax for ax in range(ndim) if ax != channel_axis]
        n_channels = 1 if channel_axis is None else shape[channel_axis]
        if n_channels not in _CHANNEL_COUNTS:
            raise ValueError(
                f"channel axis {channel_axis} has {n_channels} channels; expected 1, 3 or 4"
            )

        self._data = data
        self._channel_axis = channel_axis
        self._frame_axis = spatial[0]
        self._shape = tuple(shape[ax] for ax in spatial)
        self._n_channels = n_channels
        self._nan_policy = nan_policy
        self.name = name
        self._window = None if window is None else check_window(window)
        if geometry is not None and channel_axis is None:
            geometry.check_labels(self._shape, "stack")
        self.geometry = geometry
        #: How this stack's frames map to the source voxel order (identity unless made by ``along``).
        self.axis_view: Any = None

    # -- description -----------------------------------------------------
    @property
    def data(self) -> Any:
        """The wrapped array (unchanged, possibly lazy)."""
        return self._data

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, Y, X)``."""
        return self._shape

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(Y, X)``."""
        return self._shape[1], self._shape[2]

    @property
    def dtype(self) -> np.dtype:
        """dtype of the raw data."""
        return self._dtype

    @property
    def channel_axis(self) -> int | None:
        """Axis of the colour channels in :attr:`data`, or ``None``."""
        return self._channel_axis

    @property
    def n_channels(self) -> int:
        """Channels per pixel in the raw data (1, 3 or 4)."""
        return self._n_channels

    @property
    def nan_policy(self) -> str:
        """``"raise"`` or ``"zero"``."""
        return self._nan_policy

    @property
    def window(self) -> tuple[float, float]:
        """Contrast window ``(lo, hi)`` used by :meth:`normalized`.

        uint8 data without a user window reports ``(0.0, 255.0)``; other
        dtypes compute the robust default on first access (bounded read).
        """
        if self._window is None:
            if self._dtype == np.uint8:
                return 0.0, 255.0
            self._window = robust_window(self._colour_slice, len(self))
        return self._window

    @window.setter
    def window(self, value: tuple[float, float] | None) -> None:
        self._window = None if value is None else check_window(value)

    def __len__(self) -> int:
        return self._shape[0]

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return (
            f"<FrameStack{label} shape={self._shape} channels={self._n_channels} "
            f"dtype={self._dtype} data={type(self._data).__name__}>"
        )

    def along(self, axis: Any) -> "FrameStack":
        """This volume seen as slices perpendicular to ``axis`` (axial, coronal or sagittal).

        The view is lazy (see :class:`~napari_sam2med.io.axes.TransposedArray`) and
        normalizes exactly like this stack (same contrast window). Its
        ``axis_view.to_original(labels)`` puts labels computed on it back in this
        stack's voxel order; ``geometry`` stays the source's.

        Parameters
        ----------
        axis : Axis or str
            ``"axial"`` (frames along the superior axis; the stack itself for
            axially stored volumes), ``"coronal"`` or ``"sagittal"``; which voxel
            axis that is comes from :attr:`geometry`.
        """
        from .axes import AxisView

        if self._channel_axis is not None:
            raise ValueError("only grayscale volumes can be resliced along another axis")
        if self.axis_view is not None and not self.axis_view.identity:
            raise ValueError("this stack is already a resliced view; reslice the source stack")
        view = AxisView.for_axis(axis, self.geometry)
        window = None if (self._window is None and self._dtype == np.uint8) else self.window
        out = FrameStack(view.to_view(self._data), window=window, name=self.name,
                         nan_policy=self._nan_policy)
        out.geometry = self.geometry
        out.axis_view = view
        return out

    # -- reading -----------------------------------------------------------
    def _check_index(self, i: Any) -> int:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"slice index must be an integer, got {type(i).__name__}")
        n = len(self)
        if not 0 <= int(i) < n:
            raise IndexError(f"slice index {i} out of range for a stack of {n} slices")
        return int(i)

    def raw(self, i: int) -> np.ndarray:
        """Read slice ``i`` as stored: ``(Y, X)`` or ``(Y, X, C)``.

        Only that slice is read (lazy backends index one frame).
        """
        i = self._check_index(i)
        key: list[Any] = [slice(None)] * (3 if self._channel_axis is None else 4)
        key[self._frame_axis] = i
        values = np.asarray(self._data[tuple(key)])
        if self._channel_axis is not None:
            # After dropping the frame axis the channel axis shifts left if it came after it.
            c_axis = self._channel_axis - (1 if self._channel_axis > self._frame_axis else 0)
            values = np.moveaxis(values, c_axis, -1)
            if values.shape[-1] == 1:
                values = values[..., 0]
        return values

    def _colour_slice(self, i: int) -> np.ndarray:
        """Raw slice without an alpha channel."""
        values = self.raw(i)
        return values[..., :3] if values.ndim == 3 else values

    def normalized(self, i: int) -> np.ndarray:
        """Slice ``i`` as float32 ``(Y, X, 3)`` in [0, 1].

        Gray slices are repeated into 3 channels, RGBA drops alpha. uint8 without
        a user window maps exactly as ``x / 255``; other data map
        :attr:`window` to 0..1 and clip.
        """
        values = self._colour_slice(i)
        window = None if (self._window is None and self._dtype == np.uint8) else self.window
        out = normalize_slice(values, window, nan_policy=self._nan_policy)
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=-1)
        return np.ascontiguousarray(out)
