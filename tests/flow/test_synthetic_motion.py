"""Realism options of the generator: tissue motion (exact ground truth), line-scan cell texture, fast tail."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam2med.flow.synthetic import LONG_MOTION, SyntheticConfig, long_config, make_video, textures
from napari_sam2med.flow.synthetic.realism import realistic_velocity

CLEAN = dict(photons=(1e9, 1e9), read_noise=(0.0, 0.0), blur=(0.5, 0.5), relief=(0.0, 0.0), drift=0.0,
             n_defocus=(0, 0), height=48, width=48, n_frames=12, max_speed=4.0, seed=5)


def _residual(video, flow) -> float:
    """Mean |frame t - frame t+1 sampled at p + flow(p)| away from the border (cubic)."""
    rows, cols = np.mgrid[0:48, 0:48].astype(np.float64)
    inner = (slice(5, -5), slice(5, -5))
    errs = []
    for t in range(len(flow)):
        warped = ndi.map_coordinates(video.frames[t + 1], [rows + flow[t][..., 0], cols + flow[t][..., 1]],
                                     order=3, mode="nearest")
        errs.append(np.abs(warped - video.frames[t])[inner].mean())
    return float(np.mean(errs))


def test_tissue_motion_ground_truth_is_tissue_plus_blood_and_exact():
    still = make_video(SyntheticConfig(**CLEAN))
    moving = make_video(SyntheticConfig(tissue_motion=3.0, **CLEAN))
    assert moving.frame_ids is not None and moving.frame_ids.shape == (12, 48, 48)
    np.testing.assert_array_equal(moving.vessel_ids, moving.frame_ids[0])
    assert not np.array_equal(moving.frame_ids[0], moving.frame_ids[-1])  # vessels move with the tissue
    background = ~moving.mask(0)
    assert np.abs(moving.flow[:, background]).max() > 0.05  # the background moves too
    exact = _residual(moving, moving.flow)
    # The GT explains the rendering as well as without tissue motion, and far better than the
    # blood-only flow (tissue motion left out) or no flow at all.
    assert exact < 1.3 * _residual(still, still.flow)
    assert exact < 0.6 * _residual(moving, still.flow)
    assert exact < 0.6 * _residual(moving, np.zeros_like(moving.flow))


def test_long_sets_are_unchanged_and_the_motion_variant_differs():
    v = make_video(long_config(30_000_000, n_frames=6, size=32))
    # Digests made by the generator before these options: the long held-out set is the same videos.
    assert hashlib.sha256(v.frames.tobytes()).hexdigest()[:16] == "f98f1571996c9b53"
    assert hashlib.sha256(v.flow.tobytes()).hexdigest()[:16] == "51a86a77d878d4c2"
    m = make_video(long_config(30_000_000, n_frames=6, size=32, **LONG_MOTION))
    assert m.frame_ids is not None and not np.array_equal(m.flow, v.flow)


def test_fast_tail_reaches_the_tail_speed():
    def mean_speeds(tail):
        return [np.abs(realistic_velocity(np.random.default_rng(s), 200, 15.0, tail)).mean() for s in range(400)]

    assert max(mean_speeds(0.0)) < 10.5  # the v1 long set's tail: base speed up to 10
    fast = np.array(mean_speeds(15.0))
    assert fast.max() > 13.0 and np.median(fast) < 2.0  # mostly slow, a tail to 15


def test_linescan_texture_falls_back_to_procedural_without_the_data(monkeypatch):
    monkeypatch.setattr(textures, "_kymograph", lambda: None)
    cfg = dict(height=32, width=32, n_frames=4, seed=3)
    a = make_video(SyntheticConfig(cell_texture="linescan", **cfg))
    b = make_video(SyntheticConfig(**cfg))
    np.testing.assert_array_equal(a.frames, b.frames)
    with pytest.raises(ValueError, match="cell_texture"):
        make_video(SyntheticConfig(cell_texture="nope", **cfg))


def test_linescan_texture_has_real_cells_and_gaps():
    if not textures.linescan_available():
        pytest.skip("shared/data/flow_linescans not available")
    tex = textures.linescan_texture(np.random.default_rng(0), 400, 6.0)
    assert tex.shape == (10, 400) and tex.min() >= 0.0 and tex.max() <= 1.0
    centre = tex[5]
    # Cells and plasma gaps alternate along the vessel on a scale of a few px.
    assert centre.std() > 0.1 and 10 < np.sum(np.abs(np.diff(centre > np.median(centre)))) < 200
    assert tex[[0, -1]].mean() < 0.5 * centre.mean()  # the rounded cross-section: no cells outside the wall
