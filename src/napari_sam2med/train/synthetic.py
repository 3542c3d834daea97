"""Diverse synthetic 3D volumes with ground truth, for training and testing promptable segmentation.

Every volume holds several labelled objects and unlabelled distractors of the same kinds, sizes and
contrasts, at random positions, so that the prompt (box, point or mask) is the only way to know which
object to segment. Objects move, grow or shrink, and start and end through the slices.

API (stable)
------------
>>> from napari_sam2med.train.synthetic import SyntheticVolumeConfig, ObjectKind, make_volume
>>> cfg = SyntheticVolumeConfig(shape=(16, 128, 128))          # defaults: 1-3 objects, 1-4 distractors
>>> image, labels = make_volume(cfg, seed=7)                    # deterministic by seed
>>> image.dtype, image.shape, labels.dtype                      # uint8 (Z, Y, X), int32 (Z, Y, X)
>>> sample = make_sample(cfg, seed=7)                           # the same, plus per-object metadata
>>> sample.image, sample.labels, sample.kinds                   # kinds: {object id: ObjectKind}

``labels`` is 0 for background (and distractors) and ``1..n`` for the labelled objects, numbered in
painting order; where objects overlap, the one painted last is on top (in the image and the labels).
An object id may be absent from some slices (objects begin and end inside the volume); every
labelled id has at least ``cfg.min_voxels`` voxels. A 16x128x128 volume takes ~20 ms on one CPU core.

Object kinds (:class:`ObjectKind`): ``LESION`` compact, 6-40 px across (``cfg.lesion_px``), a few to
ten slices deep; ``BLOB`` larger irregular ellipsoids; ``TUBE`` curved bands (vessels, bowel) that
bend and drift between slices; ``ORGAN`` large smooth shapes across most slices. Lesions are often
placed inside an organ, as in CT. Modalities (:class:`Modality`): ``CT`` (body outline, air, flat
tissue, Gaussian noise) and ``MR`` (smooth bias field, Rician noise, inverted contrasts), or
``MIXED`` (one chosen per volume).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["ObjectKind", "Modality", "SyntheticVolumeConfig", "SyntheticSample", "make_volume", "make_sample"]


class ObjectKind(str, enum.Enum):
    """Shapes of synthetic objects."""

    LESION = "lesion"
    BLOB = "blob"
    TUBE = "tube"
    ORGAN = "organ"


class Modality(str, enum.Enum):
    """Image appearance."""

    CT = "ct"
    MR = "mr"
    MIXED = "mixed"


@dataclass
class SyntheticVolumeConfig:
    """What :func:`make_volume` draws from.

    Parameters
    ----------
    shape : (Z, Y, X)
        Volume shape; Z may be 1 (a single slice).
    n_objects : (min, max)
        Labelled objects per volume (inclusive).
    n_distractors : (min, max)
        Unlabelled objects of the same kinds per volume (inclusive).
    kinds : tuple of ObjectKind
        Kinds drawn from, each with weight ``kind_weights`` (default equal).
    lesion_px : (min, max)
        In-plane diameter range of lesions, in pixels.
    modality : Modality
        CT, MR or MIXED.
    max_drift : float
        Largest in-plane motion of an object centre per slice, in pixels.
    max_growth : float
        Largest relative change of an object's size per slice (grows or shrinks).
    contrast : (min, max)
        Object-to-background intensity difference, as a fraction of the 0..1 range (sign random).
    noise : (min, max)
        Noise standard deviation range, fraction of the range.
    min_voxels : int
        Labelled objects smaller than this (after occlusion) are redrawn.
    """

    shape: tuple[int, int, int] = (16, 128, 128)
    n_objects: tuple[int, int] = (1, 3)
    n_distractors: tuple[int, int] = (1, 4)
    kinds: tuple[ObjectKind, ...] = (ObjectKind.LESION, ObjectKind.BLOB, ObjectKind.TUBE, ObjectKind.ORGAN)
    kind_weights: tuple[float, ...] | None = None
    lesion_px: tuple[float, float] = (6.0, 40.0)
    modality: Modality = Modality.MIXED
    max_drift: float = 1.5
    max_growth: float = 0.06
    contrast: tuple[float, float] = (0.08, 0.45)
    noise: tuple[float, float] = (0.01, 0.06)
    min_voxels: int = 20

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or self.shape[0] < 1 or min(self.shape[1:]) < 32:
            raise ValueError(f"shape must be (Z, Y, X) with Z >= 1 and Y, X >= 32, got {self.shape}")
        for name in ("n_objects", "n_distractors", "lesion_px", "contrast", "noise"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ValueError(f"{name} must be (min, max) with 0 <= min <= max, got {(lo, hi)}")
        if self.n_objects[0] < 1:
            raise ValueError("n_objects must allow at least one labelled object")
        if not self.kinds:
            raise ValueError("kinds is empty")
        self.kinds = tuple(ObjectKind(k) for k in self.kinds)
        self.modality = Modality(self.modality)
        if self.kind_weights is not None and len(self.kind_weights) != len(self.kinds):
            raise ValueError("kind_weights needs one weight per kind")


@dataclass
class SyntheticSample:
    """A volume, its labels and what each labelled object is."""

    image: np.ndarray  # uint8 (Z, Y, X)
    labels: np.ndarray  # int32 (Z, Y, X)
    kinds: dict[int, ObjectKind] = field(default_factory=dict)
    modality: Modality = Modality.CT


@dataclass
class _Shape:
    """One object's geometry through the slices."""

    kind: ObjectKind
    z0: int
    z1: int  # inclusive extent
    centre: tuple[float, float]  # at the middle slice
    velocity: tuple[float, float]
    radius: float  # in-plane half-size at the middle slice
    aspect: float
    angle: float
    harmonics: np.ndarray  # (K, 2): amplitude, phase
    growth: float
    bend: tuple[float, float, float] = (0.0, 0.0, 0.0)  # tube: amplitude, frequency, phase

    @property
    def mid(self) -> float:
        return 0.5 * (self.z0 + self.z1)

    def profile(self, z: int) -> float:
        """Size factor on slice z (rounded ends along z, times growth)."""
        half = 0.5 * (self.z1 - self.z0) + 0.75
        t = min(abs(z - self.mid) / half, 1.0)
        end = {ObjectKind.TUBE: 1.0, ObjectKind.ORGAN: (1 - t * t) ** 0.3}.get(self.kind, (1 - t * t) ** 0.5)
        return end * max(0.2, 1.0 + self.growth * (z - self.mid))

    def mask(self, z: int, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (Y, X) cross-section on slice ``z`` (computed inside the object's window only)."""
        out = np.zeros(shape, bool)
        if not self.z0 <= z <= self.z1:
            return out
        cy = self.centre[0] + self.velocity[0] * (z - self.mid)
        cx = self.centre[1] + self.velocity[1] * (z - self.mid)
        r = self.radius * self.profile(z)
        if self.kind is ObjectKind.TUBE:
            reach = np.hypot(self.radius * self.aspect, abs(self.bend[0]) + max(r, 1.0))
        else:
            reach = r * (1 + np.abs(self.harmonics[:, 0]).sum()) * max(1.0, 1.0 / self.aspect)
        y0, y1 = max(int(cy - reach) - 1, 0), min(int(cy + reach) + 2, shape[0])
        x0, x1 = max(int(cx - reach) - 1, 0), min(int(cx + reach) + 2, shape[1])
        if y0 >= y1 or x0 >= x1:
            return out
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = self._inside(z, r, yy - cy, xx - cx)
        return out

    def _inside(self, z: int, r: float, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        u, v = ca * dx + sa * dy, -sa * dx + ca * dy  # along / across the object's axis
        if self.kind is ObjectKind.TUBE:
            amp, freq, phase = self.bend
            centre_line = amp * np.sin(freq * u + phase + 0.15 * (z - self.mid))
            return (np.abs(v - centre_line) <= max(r, 1.0)) & (np.abs(u) <= self.radius * self.aspect)
        theta = np.arctan2(v * self.aspect, u)
        k = np.arange(1, len(self.harmonics) + 1)[:, None, None]
        wobble = 1.0 + np.sum(self.harmonics[:, 0, None, None] * np.cos(k * theta + self.harmonics[:, 1, None, None]), 0)
        return np.hypot(u, v * self.aspect) <= r * wobble


def _randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, max(lo, hi)]."""
    return int(rng.integers(lo, max(lo, hi) + 1))


def _draw_shape(rng: np.random.Generator, kind: ObjectKind, cfg: SyntheticVolumeConfig,
                inside: _Shape | None) -> _Shape:
    nz, ny, nx = cfg.shape
    side = min(ny, nx)
    if kind is ObjectKind.LESION:
        radius = 0.5 * rng.uniform(*cfg.lesion_px)
        depth = _randint(rng, 2, 10)
        harm = np.stack([rng.uniform(0, 0.12, 3), rng.uniform(0, 2 * np.pi, 3)], 1)
        aspect = rng.uniform(0.7, 1.4)
    elif kind is ObjectKind.BLOB:
        radius = rng.uniform(0.1, 0.22) * side
        depth = _randint(rng, 4, 2 * nz)
        harm = np.stack([rng.uniform(0, 0.2, 4), rng.uniform(0, 2 * np.pi, 4)], 1)
        aspect = rng.uniform(0.5, 1.6)
    elif kind is ObjectKind.ORGAN:
        radius = rng.uniform(0.2, 0.33) * side
        depth = _randint(rng, max(nz // 2, 1), 2 * nz)
        harm = np.stack([rng.uniform(0, 0.15, 5), rng.uniform(0, 2 * np.pi, 5)], 1)
        aspect = rng.uniform(0.5, 1.8)
    else:  # TUBE: radius is the half-thickness, aspect the half-length in radii
        radius = rng.uniform(1.5, 5.0)
        depth = _randint(rng, 3, 2 * nz)
        harm = np.zeros((0, 2))
        aspect = rng.uniform(0.15, 0.4) * side / radius
    half_depth = 0.5 * depth
    zc = rng.uniform(-0.25 * depth, nz - 1 + 0.25 * depth) if nz > 1 else 0.0
    z0, z1 = max(0, int(round(zc - half_depth))), min(nz - 1, int(round(zc + half_depth)))
    if inside is not None:  # a lesion within an organ's footprint at its middle slice
        cy = inside.centre[0] + rng.uniform(-0.5, 0.5) * inside.radius
        cx = inside.centre[1] + rng.uniform(-0.5, 0.5) * inside.radius
    else:
        margin = min(radius, 0.3 * side)
        cy, cx = rng.uniform(margin, ny - margin), rng.uniform(margin, nx - margin)
    speed = rng.uniform(0, cfg.max_drift)
    heading = rng.uniform(0, 2 * np.pi)
    bend = (rng.uniform(0, 0.12) * side, rng.uniform(0.02, 0.12), rng.uniform(0, 2 * np.pi))
    return _Shape(kind, z0, z1, (cy, cx), (speed * np.sin(heading), speed * np.cos(heading)), radius,
                  aspect, rng.uniform(0, np.pi), harm, rng.uniform(-cfg.max_growth, cfg.max_growth), bend)


def _smooth(rng: np.random.Generator, shape, sigma: tuple[float, float, float]) -> np.ndarray:
    """Zero-mean, unit-std smooth noise."""
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def _coarse(rng: np.random.Generator, shape, scale: int) -> np.ndarray:
    """Smooth zero-mean, unit-std noise with features ~``scale`` px across, made on a coarse grid."""
    nz, ny, nx = shape
    small = (max(nz // 4, 1) + 2, ny // scale + 3, nx // scale + 3)
    coarse = ndi.gaussian_filter(rng.standard_normal(small).astype(np.float32), 0.7)
    # Linear interpolation of an already smooth grid: 8x cheaper than cubic, no visible kinks.
    n = ndi.zoom(coarse, (nz / small[0], ny / small[1], nx / small[2]), order=1, grid_mode=True,
                 mode="nearest")[:nz, :ny, :nx]
    return n / (n.std() + 1e-6)


def _background(rng: np.random.Generator, cfg: SyntheticVolumeConfig, modality: Modality) -> np.ndarray:
    nz, ny, nx = cfg.shape
    tissue = rng.uniform(0.3, 0.6)
    img = tissue + rng.uniform(0.01, 0.05) * _coarse(rng, cfg.shape, 6)
    if modality is Modality.CT:
        yy, xx = np.mgrid[:ny, :nx]
        ry, rx = rng.uniform(0.42, 0.7) * ny, rng.uniform(0.42, 0.7) * nx
        body = ((yy - ny / 2 + rng.normal(0, 4)) / ry) ** 2 + ((xx - nx / 2 + rng.normal(0, 4)) / rx) ** 2 <= 1
        img = np.where(body[None], img, rng.uniform(0.0, 0.05))
    else:  # MR: multiplicative bias field
        img = img * (1.0 + rng.uniform(0.05, 0.3) * _coarse(rng, cfg.shape, 24))
    return img.astype(np.float32)


def _finish(rng: np.random.Generator, img: np.ndarray, cfg: SyntheticVolumeConfig, modality: Modality) -> np.ndarray:
    sigma = rng.uniform(*cfg.noise)
    if modality is Modality.MR:  # Rician magnitude noise
        img = np.hypot(img + sigma * rng.standard_normal(img.shape), sigma * rng.standard_normal(img.shape))
    else:
        img = img + sigma * rng.standard_normal(img.shape).astype(np.float32)
        img = ndi.gaussian_filter(img, (0, rng.uniform(0.0, 0.8), rng.uniform(0.0, 0.8)))  # reconstruction blur
    lo, hi = np.percentile(img, [rng.uniform(0, 2), rng.uniform(98, 100)])
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) ** rng.uniform(0.7, 1.4)  # window and gamma
    return np.round(img * 255).astype(np.uint8)


def make_sample(cfg: SyntheticVolumeConfig | None = None, seed: int = 0) -> SyntheticSample:
    """One synthetic volume with labels and per-object kinds; deterministic given ``seed``.

    Parameters
    ----------
    cfg : SyntheticVolumeConfig, optional
        Defaults to ``SyntheticVolumeConfig()``.
    seed : int
        Seed for every random choice.

    Returns
    -------
    SyntheticSample
        ``image`` uint8 (Z, Y, X), ``labels`` int32 (Z, Y, X), ``kinds`` {id: ObjectKind}.
    """
    cfg = cfg or SyntheticVolumeConfig()
    rng = np.random.default_rng(seed)
    modality = cfg.modality
    if modality is Modality.MIXED:
        modality = Modality.CT if rng.random() < 0.5 else Modality.MR
    nz, ny, nx = cfg.shape
    weights = np.asarray(cfg.kind_weights or [1.0] * len(cfg.kinds), float)
    weights = weights / weights.sum()
    n_obj = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    n_dis = int(rng.integers(cfg.n_distractors[0], cfg.n_distractors[1] + 1))
    # Labelled objects and distractors are drawn alike and painted in a shuffled order.
    roles = [True] * n_obj + [False] * n_dis
    rng.shuffle(roles)
    shapes: list[tuple[_Shape, bool]] = []
    organs: list[_Shape] = []
    for labelled in roles:
        kind = cfg.kinds[int(rng.choice(len(cfg.kinds), p=weights))]
        host = organs[int(rng.integers(len(organs)))] if kind is ObjectKind.LESION and organs and rng.random() < 0.6 else None
        s = _draw_shape(rng, kind, cfg, host)
        if kind is ObjectKind.ORGAN:
            organs.append(s)
        shapes.append((s, labelled))
    # Larger objects first, so small ones are rarely hidden (order within a size class stays random).
    order = sorted(range(len(shapes)), key=lambda i: -shapes[i][0].radius * (shapes[i][0].kind is not ObjectKind.TUBE))

    img = _background(rng, cfg, modality)
    labels = np.zeros(cfg.shape, np.int32)
    # Two shared texture fields; each object mixes them with its own weights (cheaper than one each).
    tex = _smooth(rng, cfg.shape, (0.8, 2.0, 2.0)), _smooth(rng, cfg.shape, (0.5, 1.0, 1.0))
    kinds: dict[int, ObjectKind] = {}
    next_id = 1
    for i in order:
        s, labelled = shapes[i]
        mask = np.stack([s.mask(z, (ny, nx)) for z in range(nz)])
        if not mask.any():
            continue
        sign = rng.choice([-1.0, 1.0]) if modality is Modality.CT else rng.choice([-1.0, 1.0], p=[0.6, 0.4])
        value = float(np.clip(img[mask].mean() + sign * rng.uniform(*cfg.contrast), 0.02, 1.0))
        # Blend inside the object's bounding box only (plus a margin for the soft edge).
        idx = np.nonzero(mask.any(axis=0))
        box = (slice(None), *(slice(max(int(a.min()) - 4, 0), int(a.max()) + 5) for a in idx))
        m = mask[box]
        texture = rng.uniform(0.0, 0.04) * tex[0][box] + rng.uniform(0.0, 0.02) * tex[1][box]
        soft = ndi.gaussian_filter(m.astype(np.float32), (0, rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.2)))
        soft = np.maximum(soft, m * 0.75)  # keep the labelled region clearly inside the edge
        img[box] = img[box] * (1 - soft) + (value + texture) * soft
        oid = next_id if labelled else 0
        labels[mask] = oid
        if labelled:
            kinds[oid] = s.kind
            next_id += 1
    # Drop objects hidden below others, renumbering the survivors 1..n in painting order.
    counts = np.bincount(labels.ravel(), minlength=next_id)
    keep = [k for k in range(1, next_id) if counts[k] >= cfg.min_voxels]
    lut = np.zeros(next_id, np.int32)
    lut[keep] = np.arange(1, len(keep) + 1)
    labels = lut[labels]
    kinds = {int(lut[k]): kinds[k] for k in keep}
    if not kinds:  # nothing survived: draw again from a derived seed (deterministic)
        return make_sample(cfg, int(np.random.default_rng(seed).integers(2**31)) + 1)
    return SyntheticSample(_finish(rng, img, cfg, modality), labels, kinds, modality)


def make_volume(cfg: SyntheticVolumeConfig | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 (Z, Y, X), labels int32 (Z, Y, X))`` of :func:`make_sample`."""
    s = make_sample(cfg, seed)
    return s.image, s.labels
