"""A minimal lazy array whose slices along axis 0 come from a read function.

Used for formats whose natural access unit is one slice (NIfTI planes,
DICOM files). It supports the small array protocol that ``FrameStack`` and
napari use: ``shape``, ``dtype``, ``ndim``, ``__len__``, ``__getitem__`` and
``__array__`` (which reads everything).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


class LazySlices:
    """Array-like of shape ``(N, *frame_shape)`` read one slice at a time.

    Parameters
    ----------
    read_slice : callable
        ``read_slice(i)`` returns slice ``i`` as an array of ``frame_shape``.
    n : int
        Number of slices.
    frame_shape : tuple of int
        Shape of one slice.
    dtype : numpy dtype
        dtype every slice is cast to.
    """

    def __init__(
        self,
        read_slice: Callable[[int], np.ndarray],
        n: int,
        frame_shape: tuple[int, ...],
        dtype: Any,
    ) -> None:
        self._read_slice = read_slice
        self.shape = (int(n), *(int(s) for s in frame_shape))
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<LazySlices shape={self.shape} dtype={self.dtype}>"

    def _slice(self, i: int) -> np.ndarray:
        values = np.asarray(self._read_slice(i), dtype=self.dtype)
        if values.shape != self.shape[1:]:
            raise ValueError(
                f"slice {i} has shape {values.shape}, expected {self.shape[1:]}"
            )
        return values

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if first is Ellipsis:
            first, rest = slice(None), key
        if isinstance(first, (int, np.integer)) and not isinstance(first, (bool, np.bool_)):
            n = len(self)
            if not -n <= int(first) < n:
                raise IndexError(f"index {first} out of range for axis 0 of size {n}")
            return self._slice(int(first) % n)[rest] if rest else self._slice(int(first) % n)
        indices = np.arange(len(self))[first]
        stacked = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        for out_i, i in enumerate(indices):
            stacked[out_i] = self._slice(int(i))
        return stacked[(slice(None), *rest)] if rest else stacked

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)
