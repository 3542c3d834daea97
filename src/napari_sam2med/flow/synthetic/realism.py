"""Closer-to-real-recording options of the synthetic generator (``SyntheticConfig(realistic=True)``).

Real capillary recordings (and the two-photon line scans in ``shared/data/flow_linescans``,
median 4-6 px/line) differ from the v1 generator in ways that matter over long videos:

* most cells are slow (sub-pixel to 2 px/frame) with a tail of fast ones (up to ~15);
* speed changes over seconds with the heartbeat (a period of tens of frames), not only
  within a 12-frame clip;
* few photons, low contrast and vignetting (a darker rim);
* fast cells are smeared along the vessel by the exposure (motion blur).

Non-rigid tissue motion (:mod:`.tissue`) and cell texture sampled from real line scans
(:mod:`.textures`) are separate options of :class:`.generator.SyntheticConfig`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["realistic_velocity", "vignette", "EXPOSURE_SAMPLES"]

#: Sub-samples averaged over the exposure of a frame for motion blur.
EXPOSURE_SAMPLES = 5


def realistic_velocity(rng: np.random.Generator, n_pairs: int, max_speed: float, tail: float = 0.0,
                       fast_fraction: float = 0.2) -> np.ndarray:
    """Signed speed per frame pair: mostly slow, a fast tail, heartbeat modulation over tens of frames.

    ``tail`` is the largest base speed of the fast tail (0: ``max_speed / 1.5``, the v1 long set);
    ``fast_fraction`` is the probability that a vessel is in that tail (base speed 2-``tail``
    px/frame; 0.2 = every held-out and selection set; larger values are for training only).
    """
    if not 0.0 <= fast_fraction <= 1.0:
        raise ValueError(f"fast_fraction must be in [0, 1], got {fast_fraction}")
    if rng.random() < 1.0 - fast_fraction:
        base = np.exp(rng.uniform(np.log(0.15), np.log(2.0)))
    else:
        base = rng.uniform(2.0, tail if tail > 0 else max_speed / 1.5)
    t = np.arange(n_pairs)
    beat = rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * t / rng.uniform(15, 60) + rng.uniform(0, 2 * np.pi))
    slow = rng.uniform(-0.2, 0.2) * np.sin(2 * np.pi * t / rng.uniform(150, 400) + rng.uniform(0, 2 * np.pi))
    speed = np.clip(base * (1.0 + beat + slow), 0.02, max_speed)
    return rng.choice([-1.0, 1.0]) * speed


def vignette(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multiplicative (H, W) illumination falloff towards a randomly placed rim."""
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    r0, c0 = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    radius2 = ((rows - r0) / h) ** 2 + ((cols - c0) / w) ** 2
    return (1.0 - rng.uniform(0.2, 0.5) * radius2 / radius2.max()).astype(np.float32)
