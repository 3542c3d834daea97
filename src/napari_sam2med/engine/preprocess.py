"""Frame preprocessing and the bounded LRU cache of image embeddings."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..sam2.model import FrameFeatures

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "frame_to_tensor", "FeatureCache"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frame_to_tensor(frame01: np.ndarray, image_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Turn one slice scaled to [0, 1] into the model input (1, 3, S, S).

    The slice is resized to ``image_size`` (bilinear, antialiased) and normalised with the
    ImageNet mean / std, which for uint8 data is exactly SAM2's ``x / 255`` preprocessing.

    Parameters
    ----------
    frame01 : ndarray
        (Y, X, 3) or (Y, X) float array in [0, 1].
    image_size : int
        Model input side.
    device : torch device
        Where the tensor is made.
    """
    arr = np.asarray(frame01, dtype=np.float32)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected a (Y, X, 3) slice, got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(2, 0, 1)[None]
    if tuple(t.shape[-2:]) != (image_size, image_size):
        t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=t.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=t.device).view(1, 3, 1, 1)
    return (t - mean) / std


class FeatureCache:
    """A bounded least-recently-used cache of per-slice image features.

    Parameters
    ----------
    compute : callable
        ``compute(slice_idxs) -> list[FrameFeatures]``: encodes one or several slices in one batch.
    capacity : int
        Most slices kept; older ones are dropped, so memory does not grow with the stack.
    """

    def __init__(self, compute: Callable[[list[int]], list[FrameFeatures]], capacity: int = 8):
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        self._compute = compute
        self.capacity = int(capacity)
        self._items: OrderedDict[int, FrameFeatures] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.encoded = 0  # slices encoded, by get() or prefetch()

    def get(self, idx: int) -> FrameFeatures:
        """Features of slice ``idx``, computed on a miss."""
        with self._lock:
            if idx in self._items:
                self._items.move_to_end(idx)
                self.hits += 1
                return self._items[idx]
        with self._lock:
            self.misses += 1
        self._store([idx], self._compute([idx]))
        return self._items[idx]

    def prefetch(self, idxs: list[int]) -> None:
        """Encode the listed slices that are not cached in one batch (at most ``capacity - 1``)."""
        todo = list(dict.fromkeys(i for i in idxs if i not in self._items))[: max(self.capacity - 1, 1)]
        if todo:
            self._store(todo, self._compute(todo))

    def _store(self, idxs: list[int], feats: list[FrameFeatures]) -> None:
        with self._lock:
            self.encoded += len(idxs)
            for i, f in zip(idxs, feats):
                self._items[i] = f
                self._items.move_to_end(i)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __contains__(self, idx: int) -> bool:
        return idx in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
