"""Crop-around-the-prompt windows, shared by training and inference.

Small objects (a 25 px lesion on a 512 px slice is 6 px at a 128 px model input) vanish when the
whole slice is resized to the model size. In crop mode the model sees a square window around the
prompt instead: ``context`` times the prompt box's longer side (at least ``min_side`` pixels),
fixed for the whole volume / clip, padded with zeros where it leaves the slice. Training draws
``context`` from a range and jitters the centre; inference uses one fixed ``context``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CropConfig", "crop_window", "window_from_box", "cut", "paste"]


@dataclass(frozen=True)
class CropConfig:
    """Crop-around-the-prompt settings.

    Parameters
    ----------
    context : float
        Window side / longer box side at inference.
    context_range : (float, float)
        Range drawn from in training.
    jitter : float
        Training-time centre shift, as a fraction of the window side.
    min_side : int
        Smallest window side in slice pixels.
    """

    context: float = 3.0
    context_range: tuple[float, float] = (2.0, 4.5)
    jitter: float = 0.15
    min_side: int = 32


def window_from_box(box_rc, context: float, min_side: int, shape: tuple[int, int],
                    shift: tuple[float, float] = (0.0, 0.0)) -> tuple[int, int, int]:
    """Square window ``(row0, col0, side)`` around a (row0, col0, row1, col1) box.

    The window may extend beyond the slice (see :func:`cut`), is never larger than the
    slice's longer side, and ``shift`` moves its centre by fractions of its side.
    """
    r0, c0, r1, c1 = (float(v) for v in box_rc)
    side = max(r1 - r0, c1 - c0, 1.0) * float(context)
    side = int(round(min(max(side, float(min_side)), float(max(shape)))))
    cr = (r0 + r1) / 2 + shift[0] * side
    cc = (c0 + c1) / 2 + shift[1] * side
    return int(round(cr - side / 2)), int(round(cc - side / 2)), side


def crop_window(mask: np.ndarray, cfg: CropConfig, rng: np.random.Generator | None = None) -> tuple[int, int, int]:
    """Window around a boolean (Y, X) mask: random context and jitter when ``rng`` is given."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("cannot crop around an empty mask")
    box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    if rng is None:
        return window_from_box(box, cfg.context, cfg.min_side, mask.shape)
    ctx = rng.uniform(*cfg.context_range)
    shift = tuple(rng.uniform(-cfg.jitter, cfg.jitter, 2))
    return window_from_box(box, ctx, cfg.min_side, mask.shape, shift)


def cut(array: np.ndarray, window: tuple[int, int, int], axes: tuple[int, int] = (-2, -1), fill=0) -> np.ndarray:
    """The square ``window`` of ``array`` along its two spatial ``axes``, zero-padded outside.

    Use ``axes=(-3, -2)`` for channel-last arrays such as (N, Y, X, 3).
    """
    r0, c0, side = window
    a = np.asarray(array)
    ya, xa = (ax % a.ndim for ax in axes)
    h, w = a.shape[ya], a.shape[xa]
    out_shape = list(a.shape)
    out_shape[ya], out_shape[xa] = side, side
    out = np.full(out_shape, fill, dtype=a.dtype)
    sr0, sc0 = max(r0, 0), max(c0, 0)
    sr1, sc1 = min(r0 + side, h), min(c0 + side, w)
    if sr1 > sr0 and sc1 > sc0:
        src = [slice(None)] * a.ndim
        dst = [slice(None)] * a.ndim
        src[ya], src[xa] = slice(sr0, sr1), slice(sc0, sc1)
        dst[ya], dst[xa] = slice(sr0 - r0, sr1 - r0), slice(sc0 - c0, sc1 - c0)
        out[tuple(dst)] = a[tuple(src)]
    return out


def paste(window_mask: np.ndarray, window: tuple[int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Put a (side, side) boolean window back into a (Y, X) slice of ``shape``."""
    r0, c0, side = window
    out = np.zeros(shape, dtype=bool)
    h, w = shape
    sr0, sc0 = max(r0, 0), max(c0, 0)
    sr1, sc1 = min(r0 + side, h), min(c0 + side, w)
    if sr1 > sr0 and sc1 > sc0:
        out[sr0:sr1, sc0:sc1] = window_mask[sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0]
    return out
