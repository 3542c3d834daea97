"""Synthetic OBM-like capillary videos with ground-truth flow.

Each video holds a few branching capillaries (meandering random-walk centre lines,
widths 3-8 px) whose red-blood-cell texture is advected along the centre line at a
known, time-varying speed (0.1 to > 10 px/frame). Cells are dark on bright plasma
(absorption contrast, as in Oblique Back-illumination Microscopy) or bright on dark.
Tissue texture, out-of-focus moving vessels, an oblique relief component, blur,
illumination drift and shot noise make the frames look like low-signal microscopy.

Ground truth is exact for the rendering: a pixel at arc length ``s`` and signed
normal offset ``d`` of vessel ``k`` shows texture ``T_k(s - D_k(t), d)``, so the
material there moves to the centre-line point at ``s + v_k(t)`` (same offset) in the
next frame, and the flow is the difference of those two positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi

from . import tissue
from .realism import EXPOSURE_SAMPLES, realistic_velocity, vignette
from .textures import linescan_texture

__all__ = ["SyntheticConfig", "SyntheticVideo", "make_video"]

_PAD = 10  # border added around the frame while measuring distances to centre lines


@dataclass
class SyntheticConfig:
    """Knobs of :func:`make_video`.

    Attributes
    ----------
    height, width, n_frames : int
        Video size.
    n_vessels : tuple of int
        Inclusive range of in-focus vessels (branches count as vessels).
    max_speed : float
        Largest speed in px/frame.
    polarity : str
        ``"dark"`` (dark cells on bright plasma), ``"bright"`` or ``"random"``.
    width_range : tuple of float
        Vessel diameters in px.
    n_defocus : tuple of int
        Inclusive range of blurred, moving vessels that are not in ``vessel_ids``.
    branch_prob : float
        Probability that a vessel after the first branches off an existing one.
    photons : tuple of float
        Range of the mean photon count at intensity 1 (lower = noisier).
    read_noise : tuple of float
        Range of the Gaussian read-noise sigma.
    blur : tuple of float
        Range of the optical blur sigma in px.
    relief : tuple of float
        Range of the oblique-illumination relief (directional derivative) strength.
    drift : float
        Maximum relative illumination change over the video.
    realistic : bool
        Closer to real recordings (:mod:`.realism`): mostly slow cells with a fast tail and
        heartbeat speed changes, half the contrast, vignetting and motion blur of fast cells.
        Combine with few ``photons`` (see :func:`.sets.long_set`). False keeps the v1 videos.
    tail_speed : float
        With ``realistic``: largest base speed of the fast tail of vessels (0: ``max_speed / 1.5``).
    fast_fraction : float
        With ``realistic``: share of fast-tail vessels (0.2 in every evaluation set; larger: training only).
    tissue_motion : float
        Peak non-rigid tissue displacement in px (:mod:`.tissue`; 0 = none). The ground-truth flow
        is then tissue + blood motion everywhere, and ``frame_ids`` holds the moving vessel ids.
    cell_texture : str
        ``"procedural"`` (blobs) or ``"linescan"`` (real cell profiles, :mod:`.textures`; falls back
        to procedural where the line scans are absent, so keep held-out sets procedural).
    seed : int
        Random seed; the video is a deterministic function of the config.
    """

    height: int = 128
    width: int = 128
    n_frames: int = 12
    n_vessels: tuple = (2, 5)
    max_speed: float = 12.0
    polarity: str = "random"
    width_range: tuple = (3.0, 8.0)
    n_defocus: tuple = (0, 2)
    branch_prob: float = 0.6
    photons: tuple = (60.0, 1500.0)
    read_noise: tuple = (0.003, 0.02)
    blur: tuple = (0.3, 1.0)
    relief: tuple = (0.0, 0.6)
    drift: float = 0.15
    realistic: bool = False
    tail_speed: float = 0.0
    fast_fraction: float = 0.2
    tissue_motion: float = 0.0
    cell_texture: str = "procedural"
    seed: int = 0


@dataclass
class SyntheticVideo:
    """One synthetic video and its ground truth.

    Attributes
    ----------
    frames : np.ndarray
        ``(T, H, W)`` float32 in [0, 1].
    flow : np.ndarray
        ``(T-1, H, W, 2)`` float32 ``(d_row, d_col)``, zero outside in-focus vessels.
    vessel_ids : np.ndarray
        ``(H, W)`` int32, in-focus vessel id (1..n), 0 = background.
    speeds : np.ndarray
        ``(T-1, n)`` float32 speed magnitude in px/frame per in-focus vessel.
    centerlines : list of np.ndarray
        ``(L, 2)`` (row, col) centre line per in-focus vessel (may leave the frame).
    polarity : str
        ``"dark"`` or ``"bright"``.
    frame_ids : np.ndarray or None
        ``(T, H, W)`` vessel ids per frame with tissue motion (``vessel_ids`` is frame 0); else None.
    """

    frames: np.ndarray
    flow: np.ndarray
    vessel_ids: np.ndarray
    speeds: np.ndarray
    centerlines: list = field(default_factory=list)
    polarity: str = "dark"
    frame_ids: Optional[np.ndarray] = None

    def mask(self, t: int) -> np.ndarray:
        """In-focus vessel mask of frame ``t`` (the pair ``t -> t + 1`` is measured there)."""
        return (self.frame_ids[t] if self.frame_ids is not None else self.vessel_ids) > 0


@dataclass
class _Vessel:
    line: np.ndarray  # (L, 2) centre line, 1 px spacing
    width: float
    velocity: np.ndarray  # (T-1,) signed speed along the line
    texture: np.ndarray  # (n_d, P) RBC texture in (offset, arc length) space


def _walk(rng, start, angle, length, h, w) -> np.ndarray:
    """Meandering 1-px-step path from ``start``; stops after leaving the padded frame."""
    wiggle = ndi.gaussian_filter1d(rng.normal(0.0, rng.uniform(0.05, 0.25), length), 4.0)
    theta = angle + np.cumsum(wiggle)
    steps = np.stack([np.sin(theta), np.cos(theta)], axis=1)
    pts = start[None] + np.cumsum(steps, axis=0)
    outside = (
        (pts[:, 0] < -_PAD + 2) | (pts[:, 0] > h + _PAD - 3)
        | (pts[:, 1] < -_PAD + 2) | (pts[:, 1] > w + _PAD - 3)
    )
    stop = int(np.argmax(outside)) if outside.any() else length
    return pts[:stop]


def _centerlines(rng, n, h, w, branch_prob) -> list[np.ndarray]:
    lines: list[np.ndarray] = []
    max_len = 3 * (h + w)
    while len(lines) < n:
        if lines and rng.random() < branch_prob:
            parent = lines[rng.integers(len(lines))]
            i = int(rng.integers(len(parent) // 5, max(len(parent) * 4 // 5, len(parent) // 5 + 1)))
            i = min(max(i, 1), len(parent) - 2)
            tangent = parent[i + 1] - parent[i - 1]
            angle = np.arctan2(tangent[0], tangent[1]) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.3)
            line = np.concatenate([parent[i : i + 1], _walk(rng, parent[i], angle, max_len, h, w)])
        else:
            start = rng.uniform([0.15 * h, 0.15 * w], [0.85 * h, 0.85 * w])
            angle = rng.uniform(-np.pi, np.pi)
            fwd = _walk(rng, start, angle, max_len, h, w)
            back = _walk(rng, start, angle + np.pi, max_len, h, w)
            line = np.concatenate([back[::-1], start[None], fwd])
        if len(line) >= 12:
            lines.append(line)
    return lines


def _velocity(rng, n_pairs, max_speed) -> np.ndarray:
    """Signed, pulsatile speed per frame pair; mixes slow and fast regimes."""
    if rng.random() < 0.6:
        base = np.exp(rng.uniform(np.log(0.1), np.log(max_speed)))
    else:
        base = rng.uniform(0.3 * max_speed, max_speed)
    t = np.arange(n_pairs)
    pulse = 1.0 + rng.uniform(0.0, 0.5) * np.sin(2 * np.pi * t / rng.uniform(4, 14) + rng.uniform(0, 6.3))
    speed = np.clip(base * pulse, 0.05, max_speed)
    return rng.choice([-1.0, 1.0]) * speed


def _texture(rng, length, width) -> np.ndarray:
    """RBC blobs in (offset, arc length) space, values in [0, 1], periodic along s."""
    n_d = int(np.ceil(width)) + 4
    period = length
    hematocrit = rng.uniform(0.15, 0.5)
    cell = rng.uniform(1.0, 1.8)
    n_cells = max(1, int(hematocrit * period * width / (np.pi * cell**2 * 2)))
    grid = np.zeros((n_d, period), np.float32)
    half = max(width / 2 - 1.0, 0.0)
    d = np.clip(rng.uniform(-half, half, n_cells) + n_d / 2, 0, n_d - 1)
    s = rng.uniform(0, period, n_cells)
    np.add.at(grid, (d.astype(int), s.astype(int) % period), rng.uniform(0.6, 1.0, n_cells))
    tex = ndi.gaussian_filter(grid, cell, mode=("nearest", "wrap"))
    tex /= max(float(tex.max()), 1e-6)
    return np.clip(tex * rng.uniform(1.0, 1.6), 0.0, 1.0)


def _make_vessels(rng, lines, cfg) -> list[_Vessel]:
    out = []
    t_total_max = cfg.max_speed * cfg.n_frames
    for line in lines:
        width = rng.uniform(*cfg.width_range)
        period = int(len(line) + 32 + t_total_max)
        if cfg.realistic:
            vel = realistic_velocity(rng, cfg.n_frames - 1, cfg.max_speed, cfg.tail_speed, cfg.fast_fraction)
        else:
            vel = _velocity(rng, cfg.n_frames - 1, cfg.max_speed)
        tex = linescan_texture(rng, period, width) if cfg.cell_texture == "linescan" else None
        out.append(_Vessel(line, width, vel, _texture(rng, period, width) if tex is None else tex))
    return out


def _geometry(vessels: Sequence[_Vessel], h: int, w: int):
    """Per vessel: distance to the centre line, arc length and signed offset, (K, H, W)."""
    hp, wp = h + 2 * _PAD, w + 2 * _PAD
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    dist, arc, off = [], [], []
    for v in vessels:
        idx = np.full((hp, wp), -1, np.int32)
        r = np.clip(np.round(v.line[:, 0]).astype(int) + _PAD, 0, hp - 1)
        c = np.clip(np.round(v.line[:, 1]).astype(int) + _PAD, 0, wp - 1)
        idx[r, c] = np.arange(len(v.line))
        dt, (ir, ic) = ndi.distance_transform_edt(idx < 0, return_indices=True)
        sl = (slice(_PAD, _PAD + h), slice(_PAD, _PAD + w))
        i = idx[ir[sl], ic[sl]]
        i = np.clip(i, 1, len(v.line) - 2)
        tan = v.line[i + 1] - v.line[i - 1]
        tan /= np.maximum(np.linalg.norm(tan, axis=-1, keepdims=True), 1e-6)
        dr, dc = rows - v.line[i, 0], cols - v.line[i, 1]
        arc.append(i + dr * tan[..., 0] + dc * tan[..., 1])
        off.append(tan[..., 0] * dc - tan[..., 1] * dr)
        dist.append(dt[sl])
    return np.stack(dist), np.stack(arc), np.stack(off)


def _point_at(line: np.ndarray, s: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Position at arc length ``s`` (linear extrapolation past the ends) + normal offset."""
    n = len(line)
    i = np.clip(np.floor(s).astype(int), 0, n - 2)
    frac = (s - i)[..., None]
    tan = line[i + 1] - line[i]
    pos = line[i] + frac * tan
    tan = tan / np.maximum(np.linalg.norm(tan, axis=-1, keepdims=True), 1e-6)
    normal = np.stack([-tan[..., 1], tan[..., 0]], axis=-1)
    return pos + offset[..., None] * normal


def _render_layer(vessels, geom, levels, h, w, n_frames, flow_out=None, blur=False):
    """Composite vessels over nothing: returns alpha (H,W), intensity (T,H,W), ids (H,W).

    ``blur`` averages the texture over each frame's exposure (the displacement to the next
    frame), smearing fast cells along the vessel.
    """
    dist, arc, off = geom
    margin = dist - np.array([v.width / 2 for v in vessels])[:, None, None]
    owner = np.argmin(margin, axis=0)
    best = np.take_along_axis(margin, owner[None], 0)[0]
    alpha = np.clip(0.5 - best, 0.0, 1.0).astype(np.float32)
    ids = np.where(best <= 0, owner + 1, 0).astype(np.int32)
    inten = np.zeros((n_frames, h, w), np.float32)
    plasma, contrast = levels
    for k, v in enumerate(vessels):
        sel = (owner == k) & (alpha > 0)
        if not sel.any():
            continue
        s, d = arc[k][sel], off[k][sel]
        disp = np.concatenate([[0.0], np.cumsum(v.velocity)])
        coord_d = np.broadcast_to(d[None] + v.texture.shape[0] / 2, (n_frames, len(s)))
        vel = np.concatenate([v.velocity, v.velocity[-1:]])
        fractions = np.linspace(-0.5, 0.5, EXPOSURE_SAMPLES) if blur else np.zeros(1)
        tex = 0.0
        for frac in fractions:
            coord_s = s[None] - (disp + frac * vel)[:, None]
            tex = tex + ndi.map_coordinates(
                v.texture, [coord_d.ravel(), coord_s.ravel()], order=1, mode="grid-wrap"
            ).reshape(n_frames, -1)
        tex = tex / len(fractions)
        inten[:, sel] = plasma[k] + contrast[k] * tex
        if flow_out is not None:
            hard = ids[sel] == k + 1
            s_in, d_in = s[hard], d[hard]
            flat = np.flatnonzero(sel)[hard]
            here = _point_at(v.line, s_in, d_in)
            for t, vel in enumerate(v.velocity):
                flow_out[t, flat // w, flat % w] = _point_at(v.line, s_in + vel, d_in) - here
    return alpha, inten, ids


def _smooth_noise(rng, h, w, sigma) -> np.ndarray:
    field_ = ndi.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), sigma, mode="wrap")
    return field_ / max(float(field_.std()), 1e-6)


def make_video(cfg: Optional[SyntheticConfig] = None, **overrides) -> SyntheticVideo:
    """Render one synthetic video with ground-truth flow.

    Parameters
    ----------
    cfg : SyntheticConfig, optional
        Generation config (defaults if None).
    **overrides
        Fields replacing those of ``cfg``.

    Returns
    -------
    SyntheticVideo
        Frames, flow, vessel ids, per-vessel speeds and centre lines.
    """
    cfg = replace(cfg or SyntheticConfig(), **overrides)
    if cfg.height < 16 or cfg.width < 16 or cfg.n_frames < 2:
        raise ValueError(f"video must be at least 16x16 with 2 frames, got {cfg.height}x{cfg.width}x{cfg.n_frames}")
    if cfg.polarity not in ("dark", "bright", "random"):
        raise ValueError(f"polarity must be 'dark', 'bright' or 'random', got {cfg.polarity!r}")
    if cfg.cell_texture not in ("procedural", "linescan"):
        raise ValueError(f"cell_texture must be 'procedural' or 'linescan', got {cfg.cell_texture!r}")
    coords = deform = None
    if cfg.tissue_motion > 0:  # own random stream: the same scene with and without tissue motion
        deform = tissue.random_deformation(np.random.default_rng([cfg.seed, 1]), cfg.height, cfg.width,
                                           cfg.n_frames, cfg.tissue_motion)
        coords = deform.scene_coords()
    rng = np.random.default_rng(cfg.seed)
    h, w, n_t = cfg.height, cfg.width, cfg.n_frames
    polarity = cfg.polarity if cfg.polarity != "random" else ("dark" if rng.random() < 0.5 else "bright")
    sign = -1.0 if polarity == "dark" else 1.0

    n_in = int(rng.integers(cfg.n_vessels[0], cfg.n_vessels[1] + 1))
    n_out = int(rng.integers(cfg.n_defocus[0], cfg.n_defocus[1] + 1))
    vessels = _make_vessels(rng, _centerlines(rng, n_in, h, w, cfg.branch_prob), cfg)

    base = rng.uniform(0.3, 0.6)
    background = base + rng.uniform(0.02, 0.06) * _smooth_noise(rng, h, w, rng.uniform(1.5, 3.0))
    background += rng.uniform(0.02, 0.1) * _smooth_noise(rng, h, w, rng.uniform(6, 16))
    if coords is None:
        frames = np.broadcast_to(background, (n_t, h, w)).astype(np.float32)
    else:
        frames = tissue.warp(background.astype(np.float32), coords)

    if n_out:
        ghosts = _make_vessels(rng, _centerlines(rng, n_out, h, w, 0.0), cfg)
        levels = (base - sign * rng.uniform(0.03, 0.15, n_out), sign * rng.uniform(0.1, 0.3, n_out))
        alpha, inten, _ = _render_layer(ghosts, _geometry(ghosts, h, w), levels, h, w, n_t)
        sig = rng.uniform(2.0, 4.0)
        a_blur = ndi.gaussian_filter(alpha, sig)
        i_blur = ndi.gaussian_filter(inten * alpha, (0, sig, sig))
        if coords is not None:
            a_blur, i_blur = tissue.warp(a_blur, coords), tissue.warp(i_blur, coords)
        frames = frames * (1 - a_blur) + i_blur

    flow = np.zeros((n_t - 1, h, w, 2), np.float32)
    plasma = base - sign * rng.uniform(0.05, 0.25, n_in)
    contrast = sign * rng.uniform(0.25, 0.6, n_in) * (0.5 if cfg.realistic else 1.0)
    frame_ids = None
    if coords is None:
        alpha, inten, ids = _render_layer(vessels, _geometry(vessels, h, w), (plasma, contrast), h, w, n_t, flow,
                                          blur=cfg.realistic)
    else:
        alpha, inten, frame_ids, blood = tissue.render_vessels(vessels, (plasma, contrast), coords, cfg.realistic,
                                                               _PAD, _point_at, EXPOSURE_SAMPLES)
        flow, ids = deform.flow(coords, blood), frame_ids[0]
    frames = frames * (1 - alpha) + inten * alpha

    frames = ndi.gaussian_filter(frames, (0, *([rng.uniform(*cfg.blur)] * 2)))
    angle = rng.uniform(0, 2 * np.pi)
    relief = rng.uniform(*cfg.relief)
    if relief > 0:
        grad = np.sin(angle) * ndi.sobel(frames, axis=1) + np.cos(angle) * ndi.sobel(frames, axis=2)
        frames = frames + relief * grad / 8.0
    t_frac = np.linspace(0.0, 1.0, n_t)[:, None, None]
    gain = 1.0 + cfg.drift * rng.uniform(-1, 1) * t_frac * (1 + 0.5 * _smooth_noise(rng, h, w, 30.0))
    if cfg.realistic:
        gain = gain * vignette(rng, h, w)
    frames = np.clip(frames * gain, 0.0, 1.0)
    photons = rng.uniform(*cfg.photons)
    frames = rng.poisson(frames * photons) / photons
    frames = frames + rng.normal(0.0, rng.uniform(*cfg.read_noise), frames.shape)
    frames = np.clip(frames, 0.0, 1.0).astype(np.float32)

    speeds = np.abs(np.stack([v.velocity for v in vessels], axis=1)).astype(np.float32)
    return SyntheticVideo(
        frames=frames,
        flow=flow,
        vessel_ids=ids,
        speeds=speeds,
        centerlines=[v.line.astype(np.float32) for v in vessels],
        polarity=polarity,
        frame_ids=frame_ids,
    )
