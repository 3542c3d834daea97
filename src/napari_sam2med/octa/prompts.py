"""Automatic point prompts from a reference annotation (SAM-OCTA2 style).

For each object of a label image:

* **positives**: one per connected component (largest first) at the
  component's centroid *snapped inside*: when the centroid pixel is not part
  of the component (thin curved vessels, C-shaped regions) we take the
  component pixel nearest to it (Euclidean distance transform); then, up to
  ``n_pos`` in total, further positives drawn uniformly inside the object.
  When the object has more than ``n_pos`` components, only the ``n_pos``
  largest get a centroid.
* **negatives**: ``n_neg`` points drawn uniformly from a ring around the
  object: ``dilate(obj, gap + width)`` minus ``dilate(obj, gap)``, without
  pixels of any labelled object. A ring cut by the image border may hold fewer
  pixels than asked; we then return what there is.

All points are (row, col) float32 pixel coordinates; labels 1 (positive) and
0 (negative), the convention of the engine's ``Session.add_points``. Sampling
uses ``numpy.random.default_rng(seed)`` and objects in increasing id order,
so the same inputs and seed give the same prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

_EIGHT = np.ones((3, 3), bool)


@dataclass
class PromptConfig:
    """How many prompts to draw and where.

    Attributes
    ----------
    n_pos : int
        Positive points per object (>= 1).
    n_neg : int
        Negative points per object (>= 0).
    ring_gap : int
        Pixels between the object and the inner edge of the negative ring.
    ring_width : int
        Width of the negative ring in pixels (>= 1).
    seed : int
        Random seed.
    """

    n_pos: int = 3
    n_neg: int = 3
    ring_gap: int = 2
    ring_width: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_pos < 1:
            raise ValueError(f"n_pos must be >= 1, got {self.n_pos}")
        if self.n_neg < 0:
            raise ValueError(f"n_neg must be >= 0, got {self.n_neg}")
        if self.ring_gap < 0 or self.ring_width < 1:
            raise ValueError(f"need ring_gap >= 0 and ring_width >= 1, got {self.ring_gap}, {self.ring_width}")


@dataclass
class ObjectPrompts:
    """Points of one object on one layer: ``points`` (N, 2) (row, col), ``labels`` (N,) 1/0."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))

    @property
    def positives(self) -> np.ndarray:
        return self.points[self.labels == 1]

    @property
    def negatives(self) -> np.ndarray:
        return self.points[self.labels == 0]


def snapped_centroid(mask: np.ndarray) -> tuple[int, int]:
    """Centroid of ``mask`` rounded to a pixel, moved to the nearest mask pixel if outside.

    Raises ``ValueError`` for an empty mask.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("cannot place a prompt in an empty mask")
    r, c = ndi.center_of_mass(mask)
    r = int(np.clip(round(r), 0, mask.shape[0] - 1))
    c = int(np.clip(round(c), 0, mask.shape[1] - 1))
    if mask[r, c]:
        return r, c
    _, (near_r, near_c) = ndi.distance_transform_edt(~mask, return_indices=True)
    return int(near_r[r, c]), int(near_c[r, c])


def negative_ring(mask: np.ndarray, gap: int, width: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Ring ``dilate(mask, gap + width) & ~dilate(mask, gap)``, minus ``exclude``."""
    mask = np.asarray(mask, bool)
    outer = ndi.binary_dilation(mask, structure=_EIGHT, iterations=gap + width)
    inner = ndi.binary_dilation(mask, structure=_EIGHT, iterations=gap) if gap > 0 else mask
    ring = outer & ~inner
    if exclude is not None:
        ring &= ~np.asarray(exclude, bool)
    return ring


def _pick(candidates: np.ndarray, count: int, rng) -> np.ndarray:
    """``count`` distinct (row, col) rows of ``candidates`` (fewer if not enough)."""
    if count <= 0 or len(candidates) == 0:
        return np.zeros((0, 2), np.int64)
    idx = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
    return candidates[np.sort(idx)]


def object_prompts(
    mask: np.ndarray,
    config: PromptConfig,
    rng: np.random.Generator,
    exclude: np.ndarray | None = None,
) -> ObjectPrompts:
    """Positive and negative points for one object mask (see the module docstring)."""
    mask = np.asarray(mask, bool)
    lab, n = ndi.label(mask, structure=_EIGHT)
    if n == 0:
        raise ValueError("cannot place prompts for an empty object")
    sizes = np.bincount(lab.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")[: config.n_pos]
    positives = [snapped_centroid(lab == (i + 1)) for i in order]
    taken = np.zeros_like(mask)
    for r, c in positives:
        taken[r, c] = True
    extra = _pick(np.argwhere(mask & ~taken), config.n_pos - len(positives), rng)
    positives = np.asarray(positives, np.int64).reshape(-1, 2)
    positives = np.concatenate([positives, extra]) if len(extra) else positives
    ring = negative_ring(mask, config.ring_gap, config.ring_width, exclude=exclude)
    negatives = _pick(np.argwhere(ring), config.n_neg, rng)
    points = np.concatenate([positives, negatives]).astype(np.float32)
    labels = np.concatenate([np.ones(len(positives), np.int32), np.zeros(len(negatives), np.int32)])
    return ObjectPrompts(points=points, labels=labels)


def prompts_from_labels(labels: np.ndarray, config: PromptConfig | None = None) -> dict[int, ObjectPrompts]:
    """Prompts for every object of a 2D int label image, keyed by object id.

    Negatives avoid every labelled pixel (of any object).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D (H, W), got shape {labels.shape}")
    config = config or PromptConfig()
    rng = np.random.default_rng(config.seed)
    foreground = labels > 0
    out: dict[int, ObjectPrompts] = {}
    for obj_id in (int(v) for v in np.unique(labels) if v > 0):
        out[obj_id] = object_prompts(labels == obj_id, config, rng, exclude=foreground)
    return out
