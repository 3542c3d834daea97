"""Training samples for crop-mode prompt encoders (numpy; one image / mask pair at a time).

Each sample is an augmented copy of a slice: one of the 8 flips / 90-degree rotations, optionally a
random warp around the object (rotation by any angle, scale, stretch and a smooth elastic field:
:func:`warp`, ``Augment.warp``), a gamma, contrast and brightness jitter and a little Gaussian noise. From it come

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

__all__ = ["Augment", "augment", "warp", "jitter", "crop_sample", "locate_sample", "dihedral"]


@dataclass(frozen=True)
class Augment:
    """Augmentation ranges: intensity jitter and, with ``warp``, a random warp around the object
    (always also one of the 8 dihedral variants).

    ``scale`` and ``stretch`` are factor ranges (log-uniform; ``stretch`` is the y/x aspect change),
    ``elastic`` the standard deviation of the elastic displacement, as a fraction of the object's
    longer side, on a ``grid`` x ``grid`` lattice of the slice (smoothly interpolated).
    """

    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.08
    noise: float = 0.02
    warp: bool = False
    scale: tuple[float, float] = (0.8, 1.25)
    stretch: tuple[float, float] = (0.85, 1.18)
    elastic: float = 0.05
    grid: int = 8


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th (0..7) flip / rotation of a (Y, X[, C]) array."""
    a = np.rot90(a, k % 4, axes=(0, 1))
    return np.ascontiguousarray(a[:, ::-1] if k >= 4 else a)


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            aug: Augment | None) -> tuple[np.ndarray, np.ndarray]:
    """A random dihedral variant of ``(image, mask)`` (the identity when ``aug`` is None)."""
    k = int(rng.integers(0, 8)) if aug is not None else 0
    image, mask = dihedral(np.asarray(image, np.float32), k), dihedral(np.asarray(mask, bool), k)
    if aug is not None and aug.warp and mask.any():
        image, mask = warp(image, mask, rng, aug)
    return image, mask


def warp(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
         aug: Augment) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (any angle), scale, stretch and elastically deform ``(image, mask)`` about the object's
    centre (same shape out; the image reflected at the borders). An empty result returns the inputs."""
    import torch
    import torch.nn.functional as F

    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    cy, cx = rows.mean(), cols.mean()
    size = max(np.ptp(rows), np.ptp(cols)) + 1.0
    a = rng.uniform(-np.pi, np.pi)
    s = np.exp(rng.uniform(*np.log(aug.scale)))
    st = np.exp(rng.uniform(*np.log(aug.stretch)))
    sy, sx = s * np.sqrt(st), s / np.sqrt(st)
    # output -> input map: input = centre + R(a) diag(1/sy, 1/sx) (output - centre) + elastic(output)
    yy = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    xx = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    dy, dx = (yy - cy) / sy, (xx - cx) / sx
    iy = cy + np.cos(a) * dy - np.sin(a) * dx
    ix = cx + np.sin(a) * dy + np.cos(a) * dx
    if aug.elastic > 0:
        g = max(int(aug.grid), 2)
        coarse = torch.from_numpy(rng.normal(0.0, aug.elastic * size, (1, 2, g, g)).astype(np.float32))
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0]
        iy, ix = iy + field[0], ix + field[1]
    grid = torch.stack([ix / max(w - 1, 1), iy / max(h - 1, 1)], -1)[None] * 2 - 1  # (1, h, w, 2) as (x, y)
    im = torch.from_numpy(np.ascontiguousarray(image, np.float32))
    im = im[None, None] if im.ndim == 2 else im.permute(2, 0, 1)[None]
    img = F.grid_sample(im, grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0]
    m = F.grid_sample(torch.from_numpy(mask.astype(np.float32))[None, None], grid, mode="bilinear",
                      padding_mode="zeros", align_corners=True)[0, 0] > 0.5
    if not bool(m.any()):
        return image, mask
    img = img[0] if image.ndim == 2 else img.permute(1, 2, 0)
    return img.numpy().astype(np.float32), m.numpy()


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
