"""Fixed held-out synthetic sets (seeds disjoint from every training stream).

Seed ranges: 12-frame validation ``20261122..`` (reported), 12-frame selection ``777..``
(choosing between weights), long held-out ``LONG_SEED0..`` (reported) and long selection
``LONG_SELECTION_SEED0..``. Training uses ``1_000_000 + 10_000_000 k + i``
(``train.flow_training``), ``50_000_000 + 1_000_000 k + i`` (``train.flow_long_training``) and
``60_000_000 + 1_000_000 k + i`` (``train.flow_mix_training``).

The long sets exist in two variants on the same seeds: the original realistic set (stable since
it was first reported) and ``**LONG_MOTION`` (non-rigid tissue motion up to 2 px, fast tail to
15 px/frame), both with procedural cell texture so they never depend on ``shared/data``.
"""

from __future__ import annotations

from .generator import SyntheticConfig, SyntheticVideo, make_video

__all__ = ["validation_set", "long_set", "long_config", "LONG_SEED0", "LONG_SELECTION_SEED0", "LONG_MOTION"]

LONG_SEED0 = 30_000_000
LONG_SELECTION_SEED0 = 31_000_000
#: Overrides of the "motion" variant of the long sets (tissue motion, fast tail to 15 px/frame).
LONG_MOTION = {"tissue_motion": 2.0, "tail_speed": 15.0}


def validation_set(n: int = 12, seed: int = 20261122, **cfg_overrides) -> list[SyntheticVideo]:
    """Fixed held-out videos (seeds ``seed .. seed + n - 1``); training must use other seeds.

    Parameters
    ----------
    n : int
        Number of videos.
    seed : int
        First seed.
    **cfg_overrides
        :class:`SyntheticConfig` fields (e.g. ``height=96``).

    Returns
    -------
    list of SyntheticVideo
    """
    return [make_video(SyntheticConfig(seed=seed + i, **cfg_overrides)) for i in range(n)]


def long_config(seed: int, n_frames: int = 300, size: int = 64, **overrides) -> SyntheticConfig:
    """Config of one long, realistic video: few photons, slow cells with a tail up to 15 px/frame."""
    kw = dict(height=size, width=size, n_frames=n_frames, realistic=True, max_speed=15.0,
              photons=(15.0, 300.0), seed=seed)
    kw.update(overrides)
    return SyntheticConfig(**kw)


def long_set(n: int = 8, n_frames: int = 300, size: int = 64, seed: int = LONG_SEED0, **overrides):
    """Yield ``n`` long realistic held-out videos one by one (each is large; never all in memory).

    Parameters
    ----------
    n, n_frames, size : int
        Number of videos, frames per video, height = width.
    seed : int
        First seed (``LONG_SEED0`` reports, ``LONG_SELECTION_SEED0`` selects).
    **overrides
        Further :class:`SyntheticConfig` fields.

    Yields
    ------
    SyntheticVideo
    """
    for i in range(n):
        yield make_video(long_config(seed + i, n_frames, size, **overrides))
