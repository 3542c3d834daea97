"""Non-rigid tissue motion for the synthetic generator (``SyntheticConfig(tissue_motion=A)``).

The whole scene (background, out-of-focus and in-focus vessels) is deformed by a smooth,
time-varying field: image pixel ``x`` at frame ``t`` shows the scene point
``y = x - A(t) * F(x)``, where ``F`` is a smooth random 2-D field (max norm 1, bilinear
between pixels) and ``A(t)`` a breathing oscillation plus a slow drift (peak ``A``).
Blood moves in the scene as before (plug flow along each centre line).

Ground truth, exact for the rendering: the material at ``x`` (scene point ``y``) moves to
``y' = y + b_t(y)`` (``b`` = blood displacement, 0 outside vessels) and is seen at frame
``t + 1`` at the ``x'`` with ``x' - A(t+1) F(x') = y'``, solved by fixed-point iteration
(a contraction: ``|A grad F| < 1``). The flow is ``x' - x``: tissue motion plus blood motion,
everywhere in the frame. In-focus vessels are rendered directly at the scene points (their
geometry, texture and blood displacement are evaluated at ``y``), so edges move with the tissue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Deformation", "random_deformation", "warp", "render_vessels"]

_FIXED_POINT_ITERS = 12


@dataclass
class Deformation:
    """Displacement ``w_t(x) = amp[t] * field(x)`` (px), ``field`` (2, H, W), ``amp`` (T,)."""

    field: np.ndarray
    amp: np.ndarray

    def at(self, t: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``w_t`` at float points, (2, ...) (bilinear in ``field``)."""
        pts = [rows.ravel(), cols.ravel()]
        out = [ndi.map_coordinates(f, pts, order=1, mode="nearest").reshape(rows.shape) for f in self.field]
        return self.amp[t] * np.stack(out)

    def scene_coords(self) -> np.ndarray:
        """(T, 2, H, W) scene point shown by each pixel of each frame."""
        grid = np.mgrid[0 : self.field.shape[1], 0 : self.field.shape[2]].astype(np.float32)
        return (grid[None] - self.amp[:, None, None, None] * self.field[None]).astype(np.float32)

    def flow(self, coords: np.ndarray, blood: np.ndarray) -> np.ndarray:
        """(T-1, H, W, 2) ground-truth flow from scene coords (T, 2, H, W) and blood (T-1, H, W, 2)."""
        grid = np.mgrid[0 : self.field.shape[1], 0 : self.field.shape[2]].astype(np.float64)
        out = np.zeros(blood.shape, np.float32)
        for t in range(len(blood)):
            target = coords[t].astype(np.float64) + np.moveaxis(blood[t], -1, 0)
            x = target.copy()
            for _ in range(_FIXED_POINT_ITERS):
                x = target + self.at(t + 1, x[0], x[1])
            out[t] = np.moveaxis(x - grid, 0, -1)
        return out


def random_deformation(rng: np.random.Generator, h: int, w: int, n_frames: int, peak: float) -> Deformation:
    """Smooth random field (scale a third to a half of the frame) with breathing and drift, max ``peak`` px."""
    sigma = rng.uniform(0.3, 0.5) * max(h, w)
    comps = [ndi.gaussian_filter(rng.standard_normal((h, w)), sigma, mode="wrap") for _ in range(2)]
    field = np.stack([c / max(float(np.abs(c).max()), 1e-9) for c in comps])
    field = field + rng.uniform(-0.5, 0.5, (2, 1, 1))  # a rigid part
    field = field / max(float(np.linalg.norm(field, axis=0).max()), 1e-9)
    t = np.arange(n_frames)
    breath = np.sin(2 * np.pi * t / rng.uniform(20, 90) + rng.uniform(0, 2 * np.pi))
    drift = rng.uniform(-1, 1) * t / max(n_frames - 1, 1)
    amp = breath + 0.5 * drift
    amp = peak * rng.uniform(0.3, 1.0) * amp / max(float(np.abs(amp).max()), 1e-9)
    return Deformation(field.astype(np.float32), amp.astype(np.float32))


def warp(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Sample a static (H, W) image, or one (T, H, W) frame per ``coords[t]``, at scene coords (T, 2, H, W)."""
    frames = [image if image.ndim == 2 else image[t] for t in range(len(coords))]
    return np.stack([ndi.map_coordinates(f, c, order=1, mode="nearest") for f, c in zip(frames, coords)])


def _nearest_index(line: np.ndarray, h: int, w: int, pad: int) -> np.ndarray:
    hp, wp = h + 2 * pad, w + 2 * pad
    idx = np.full((hp, wp), -1, np.int32)
    r = np.clip(np.round(line[:, 0]).astype(int) + pad, 0, hp - 1)
    c = np.clip(np.round(line[:, 1]).astype(int) + pad, 0, wp - 1)
    idx[r, c] = np.arange(len(line))
    _, (ir, ic) = ndi.distance_transform_edt(idx < 0, return_indices=True)
    return idx[ir, ic]


def _geometry_at(line, near, rows, cols, pad):
    """Distance to the centre line, arc length and signed offset at float points."""
    hp, wp = near.shape
    i = near[np.clip(np.round(rows).astype(int) + pad, 0, hp - 1), np.clip(np.round(cols).astype(int) + pad, 0, wp - 1)]
    i = np.clip(i, 1, len(line) - 2)
    tan = line[i + 1] - line[i - 1]
    tan /= np.maximum(np.linalg.norm(tan, axis=-1, keepdims=True), 1e-6)
    dr, dc = rows - line[i, 0], cols - line[i, 1]
    return np.hypot(dr, dc), i + dr * tan[..., 0] + dc * tan[..., 1], tan[..., 0] * dc - tan[..., 1] * dr


def render_vessels(vessels, levels, coords, blur, pad, point_at, exposure):
    """Vessels rendered at the scene points of every frame.

    Returns alpha (T, H, W), intensity (T, H, W), ids (T, H, W) and the blood displacement
    (T-1, H, W, 2) of the material each pixel shows (0 outside vessels).
    """
    n_t, _, h, w = coords.shape
    near = [_nearest_index(v.line, h, w, pad) for v in vessels]
    half = np.array([v.width / 2 for v in vessels])[:, None, None]
    alpha = np.zeros((n_t, h, w), np.float32)
    inten = np.zeros((n_t, h, w), np.float32)
    ids = np.zeros((n_t, h, w), np.int32)
    blood = np.zeros((n_t - 1, h, w, 2), np.float32)
    disp = [np.concatenate([[0.0], np.cumsum(v.velocity)]) for v in vessels]
    fractions = np.linspace(-0.5, 0.5, exposure) if blur else np.zeros(1)
    plasma, contrast = levels
    for t in range(n_t):
        geo = [_geometry_at(v.line, nr, coords[t, 0], coords[t, 1], pad) for v, nr in zip(vessels, near)]
        dist, arc, off = (np.stack(g) for g in zip(*geo))
        margin = dist - half
        owner = np.argmin(margin, axis=0)
        best = np.take_along_axis(margin, owner[None], 0)[0]
        alpha[t] = np.clip(0.5 - best, 0.0, 1.0)
        ids[t] = np.where(best <= 0, owner + 1, 0)
        for k, v in enumerate(vessels):
            sel = (owner == k) & (alpha[t] > 0)
            if not sel.any():
                continue
            s, d = arc[k][sel], off[k][sel]
            vel = v.velocity[min(t, n_t - 2)]
            coord_d = d + v.texture.shape[0] / 2
            tex = sum(ndi.map_coordinates(v.texture, [coord_d, s - (disp[k][t] + f * vel)], order=1, mode="grid-wrap")
                      for f in fractions) / len(fractions)
            inten[t][sel] = plasma[k] + contrast[k] * tex
            if t < n_t - 1:
                hard = ids[t][sel] == k + 1
                rr, cc = np.nonzero(sel)
                step = point_at(v.line, s[hard] + v.velocity[t], d[hard]) - point_at(v.line, s[hard], d[hard])
                blood[t, rr[hard], cc[hard]] = step
    return alpha, inten, ids, blood
