"""Training samples: 2D slices or 3D clips of N consecutive slices where the objects are.

A clip starts on a slice where its first object is present, runs up or down the volume
(random direction, so backward propagation is learned too) and carries up to K objects
present on that slice. Augmentation is applied identically to every frame of a clip:
flips, 90-degree rotations, scale and crop (``skimage``-free, by window choice), gamma,
contrast and brightness jitter and Gaussian noise (numpy). Frames are then resized to the
model size exactly as inference does (:func:`~napari_sam2med.engine.frame_to_tensor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .crop import CropConfig, crop_window, cut
from .data import LabeledVolume

__all__ = ["Mode", "AugmentConfig", "SampleConfig", "Clip", "sample_clip"]


class Mode(str, Enum):
    """Training mode: single slices or clips of consecutive slices."""

    IMAGE = "2d"
    VIDEO = "3d"


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges (all applied per clip, identically on every frame)."""

    flip: bool = True
    rot90: bool = True
    scale: tuple[float, float] = (0.7, 1.0)  # crop side / slice side in whole-slice mode
    gamma: tuple[float, float] = (0.7, 1.5)
    contrast: tuple[float, float] = (0.75, 1.3)
    brightness: float = 0.1
    noise: float = 0.04  # largest Gaussian noise sigma (intensities in 0..1)
    p_invert: float = 0.0

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(flip=False, rot90=False, scale=(1.0, 1.0), gamma=(1.0, 1.0), contrast=(1.0, 1.0),
                   brightness=0.0, noise=0.0)


@dataclass(frozen=True)
class SampleConfig:
    """What one training sample is."""

    mode: Mode = Mode.VIDEO
    frames: int = 8
    max_objects: int = 3
    image_fraction: float = 0.0  # in 3d mode, this fraction of samples are single slices
    p_object_end: float = 0.0  # in 3d mode, this fraction of clips start near the end of their object
    image_size: int = 256
    crop: CropConfig | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class Clip:
    """One training sample: normalised frames and the masks of its objects."""

    images: torch.Tensor  # (N, 3, S, S) ImageNet-normalised
    masks: torch.Tensor  # (B, N, S, S) float {0, 1}
    volume: str
    frames: list[int]
    object_ids: list[int]


def _frames_of(vol: LabeledVolume, z: int, n: int, step: int) -> list[int]:
    frames = [z + step * k for k in range(n)]
    return [f for f in frames if 0 <= f < vol.num_slices]


def _intensity(img: np.ndarray, aug: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    x = np.clip(img, 0.0, 1.0)
    if aug.gamma != (1.0, 1.0):
        x = x ** rng.uniform(*aug.gamma)
    if aug.p_invert and rng.random() < aug.p_invert:
        x = 1.0 - x
    c = rng.uniform(*aug.contrast)
    x = (x - 0.5) * c + 0.5 + rng.uniform(-aug.brightness, aug.brightness)
    if aug.noise > 0:
        x = x + rng.normal(0.0, rng.uniform(0, aug.noise), size=x.shape[:-1])[..., None]
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _geometry(img: np.ndarray, masks: np.ndarray, aug: AugmentConfig, rng: np.random.Generator):
    """Flip / rotate (N, Y, X, 3) frames and (B, N, Y, X) masks together."""
    if aug.flip and rng.random() < 0.5:
        img, masks = img[:, :, ::-1], masks[..., ::-1]
    if aug.flip and rng.random() < 0.5:
        img, masks = img[:, ::-1], masks[..., ::-1, :]
    if aug.rot90:
        k = int(rng.integers(0, 4))
        img, masks = np.rot90(img, k, axes=(1, 2)), np.rot90(masks, k, axes=(2, 3))
    return np.ascontiguousarray(img), np.ascontiguousarray(masks)


def _scale_window(shape: tuple[int, int], mask0: np.ndarray, scale, rng: np.random.Generator):
    """A random square window of ``scale`` x the slice side that keeps the first object's centre."""
    h, w = shape
    side = int(round(max(h, w) * rng.uniform(*scale)))
    if side >= max(h, w):
        return (0, 0, max(h, w)) if h == w else ((h - max(h, w)) // 2, (w - max(h, w)) // 2, max(h, w))
    rows, cols = np.nonzero(mask0)
    cr, cc = rows.mean(), cols.mean()
    r0 = int(np.clip(rng.uniform(cr - side * 0.8, cr - side * 0.2), min(0, h - side), max(0, h - side)))
    c0 = int(np.clip(rng.uniform(cc - side * 0.8, cc - side * 0.2), min(0, w - side), max(0, w - side)))
    return r0, c0, side


def _to_model(img: np.ndarray, masks: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize (N, Y, X, 3) frames and (B, N, Y, X) masks to the model input as inference does."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(0, 3, 1, 2)
    m = torch.from_numpy(masks.astype(np.float32))
    b, n = m.shape[:2]
    if tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        m = F.interpolate(m.reshape(b * n, 1, *m.shape[-2:]), size=(size, size), mode="bilinear",
                          align_corners=False, antialias=True)
        m = (m >= 0.5).float().reshape(b, n, size, size)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (t - mean) / std, m


def sample_clip(vol: LabeledVolume, cfg: SampleConfig, rng: np.random.Generator) -> Clip:
    """Draw one clip (or one slice in 2D mode) of ``vol``.

    Parameters
    ----------
    vol : LabeledVolume
        The volume.
    cfg : SampleConfig
        Mode, clip length, objects, model size, crop and augmentation.
    rng : numpy Generator
        The only source of randomness.
    """
    presence = vol.presence
    ids = sorted(presence)
    first = ids[int(rng.integers(len(ids)))]
    zs = np.nonzero(presence[first])[0]
    z = int(zs[int(rng.integers(len(zs)))])
    single = cfg.mode is Mode.IMAGE or (cfg.image_fraction > 0 and rng.random() < cfg.image_fraction)
    n = 1 if single else max(int(cfg.frames), 1)
    step = 1 if rng.random() < 0.5 else -1
    if n > 1 and cfg.p_object_end > 0 and rng.random() < cfg.p_object_end:
        # start within n - 1 slices of where the object ends in this direction, so the clip shows it vanish
        end = zs.max() if step == 1 else zs.min()
        near = zs[np.abs(zs - end) < n - 1]
        z = int(near[int(rng.integers(len(near)))])
    frames = _frames_of(vol, z, n, step)
    if len(frames) < n and len(_frames_of(vol, z, n, -step)) > len(frames):
        frames = _frames_of(vol, z, n, -step)
    lab0 = vol.label(z)
    others = [i for i in ids if i != first and presence[i][z]]
    rng.shuffle(others)
    max_obj = 1 if cfg.crop is not None else max(int(cfg.max_objects), 1)
    obj = [first] + others[: max_obj - 1]

    img = np.stack([vol.frame(f) for f in frames])  # (N, Y, X, 3)
    labs = np.stack([vol.label(f) for f in frames])
    masks = np.stack([labs == i for i in obj])  # (B, N, Y, X)
    if cfg.crop is not None:
        window = crop_window(lab0 == first, cfg.crop, rng)
    else:
        window = _scale_window(vol.frame_shape, lab0 == first, cfg.augment.scale, rng)
    img = cut(img, window, axes=(1, 2))
    masks = cut(masks, window, axes=(2, 3))
    keep = [k for k in range(len(obj)) if masks[k, 0].any()]
    masks, obj = masks[keep], [obj[k] for k in keep]
    img, masks = _geometry(img, masks, cfg.augment, rng)
    img = _intensity(img, cfg.augment, rng)
    images, m = _to_model(img, masks, cfg.image_size)
    keep = [k for k in range(m.shape[0]) if bool(m[k, 0].any())]  # tiny objects can vanish when resized
    if not keep:
        raise ValueError(f"{vol.name}: object {first} vanishes at {cfg.image_size} px (use crop mode)")
    return Clip(images=images, masks=m[keep], volume=vol.name, frames=frames, object_ids=[obj[k] for k in keep])
