"""Training samples for crop-mode prompt encoders (numpy; one image / mask pair at a time).

Each sample is an augmented copy of a slice: one of the 8 flips / 90-degree rotations, a gamma,
contrast and brightness jitter and a little Gaussian noise. From it come

* a *crop* sample (:func:`crop_sample`): the square window SAM2 is prompted in at inference,
  ``context`` times the object's longer side (drawn from a range) with its centre jittered, as
  ``engine.crop.window_from_box`` places it;
* a *locate* sample (:func:`locate_sample`): the whole slice or a random square part of it (60-100 %
  of the side, holding the object) for the auxiliary head that finds the window at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.crop import MIN_SIDE, cut, window_from_box

__all__ = ["Augment", "augment", "jitter", "crop_sample", "locate_sample", "dihedral"]


@dataclass(frozen=True)
class Augment:
    """Intensity jitter ranges (geometric: always one of the 8 dihedral variants)."""

    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.08
    noise: float = 0.02


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th (0..7) flip / rotation of a (Y, X[, C]) array."""
    a = np.rot90(a, k % 4, axes=(0, 1))
    return np.ascontiguousarray(a[:, ::-1] if k >= 4 else a)


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            aug: Augment | None) -> tuple[np.ndarray, np.ndarray]:
    """A random dihedral variant of ``(image, mask)`` (the identity when ``aug`` is None)."""
    k = int(rng.integers(0, 8)) if aug is not None else 0
    return dihedral(np.asarray(image, np.float32), k), dihedral(np.asarray(mask, bool), k)


def jitter(image: np.ndarray, rng: np.random.Generator, aug: Augment | None) -> np.ndarray:
    """Gamma, contrast, brightness and noise jitter of an image in [0, 1] (itself when ``aug`` is None)."""
    if aug is None:
        return image
    img = np.clip(image, 0, 1) ** rng.uniform(*aug.gamma)
    mean = float(img.mean())
    img = (img - mean) * rng.uniform(*aug.contrast) + mean + rng.uniform(-aug.brightness, aug.brightness)
    if aug.noise > 0:
        img = img + rng.normal(0, rng.uniform(0, aug.noise), img.shape[:2] + (1,) * (img.ndim - 2))
    return np.clip(img, 0, 1).astype(np.float32)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def crop_sample(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                context: tuple[float, float], jitter: float) -> tuple[np.ndarray, np.ndarray]:
    """The (side, side) window around a non-empty ``mask`` with a random context and centre shift."""
    shift = tuple(rng.uniform(-jitter, jitter, 2)) if jitter > 0 else (0.0, 0.0)
    win = window_from_box(_box(mask), rng.uniform(*context), MIN_SIDE, mask.shape, shift)
    return cut(image, win, axes=(0, 1)), cut(mask, win)


def locate_sample(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                  zoom: tuple[float, float] = (0.6, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """A random square part of the slice (``zoom`` of its longer side) that holds the whole object."""
    h, w = mask.shape
    side = int(round(max(h, w) * rng.uniform(*zoom)))
    r0, c0, r1, c1 = _box(mask) if mask.any() else (0, 0, h, w)
    side = max(side, r1 - r0, c1 - c0, MIN_SIDE)
    win = (_start(r0, r1, h, side, rng), _start(c0, c1, w, side, rng), side)
    return cut(image, win, axes=(0, 1)), cut(mask, win)


def _start(lo: int, hi: int, n: int, side: int, rng: np.random.Generator) -> int:
    """A window start holding ``[lo, hi)`` and, where it can, inside ``[0, n)``."""
    a, b = max(hi - side, 0), min(lo, n - side)
    if a > b:  # the window cannot hold the object and stay inside: centre it on the object
        return (lo + hi) // 2 - side // 2
    return int(rng.integers(a, b + 1))
