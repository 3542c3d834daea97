"""Training-only share of fast-tail vessels in the realistic generator (``SyntheticConfig.fast_fraction``)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from napari_sam2med.flow.synthetic import SyntheticConfig, long_config, make_video
from napari_sam2med.flow.synthetic.realism import realistic_velocity
from napari_sam2med.train import flow_driver
from napari_sam2med.train import flow_mix_training as fmt


def _velocity_before_the_option(rng, n_pairs, max_speed, tail=0.0):
    """The generator's velocity draw as it was before ``fast_fraction`` (a fixed 20 % tail)."""
    if rng.random() < 0.8:
        base = np.exp(rng.uniform(np.log(0.15), np.log(2.0)))
    else:
        base = rng.uniform(2.0, tail if tail > 0 else max_speed / 1.5)
    t = np.arange(n_pairs)
    beat = rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * t / rng.uniform(15, 60) + rng.uniform(0, 2 * np.pi))
    slow = rng.uniform(-0.2, 0.2) * np.sin(2 * np.pi * t / rng.uniform(150, 400) + rng.uniform(0, 2 * np.pi))
    return rng.choice([-1.0, 1.0]) * np.clip(base * (1.0 + beat + slow), 0.02, max_speed)


def _mean_speeds(fraction, n=400):
    return np.array([np.abs(realistic_velocity(np.random.default_rng(s), 200, 15.0, 15.0, fraction)).mean()
                     for s in range(n)])


def test_default_is_bit_identical_to_the_fixed_tail():
    for s in range(300):
        old = _velocity_before_the_option(np.random.default_rng(s), 50, 15.0, 15.0)
        assert np.array_equal(realistic_velocity(np.random.default_rng(s), 50, 15.0, 15.0), old)
        assert np.array_equal(realistic_velocity(np.random.default_rng(s), 50, 15.0, 15.0, 0.2), old)
    # A selection video's speeds and frames (sums checked equal to the generator's output before the option).
    v = make_video(long_config(31_500_000, 16, 32, tail_speed=15.0))
    assert hashlib.sha256(v.speeds.tobytes()).hexdigest()[:16] == "58d89d889b146dc9"
    assert hashlib.sha256(v.frames.tobytes()).hexdigest()[:16] == "37edc75cc9a11800"
    assert SyntheticConfig().fast_fraction == 0.2 and fmt.MixConfig().fast_fraction == 0.2


def test_fraction_sets_the_share_of_fast_vessels():
    share = {f: float((_mean_speeds(f) > 3.0).mean()) for f in (0.0, 0.2, 0.5, 1.0)}
    assert share[0.0] == 0.0  # slow bases stop at 2 px/frame
    assert _mean_speeds(1.0).min() > 1.4 and share[1.0] > 0.85  # every vessel from the 2-15 px/frame tail
    for f in (0.2, 0.5):
        assert abs(share[f] - f * share[1.0]) < 0.07, share


def test_make_video_and_the_fine_tune_pass_the_fraction_through():
    fast = make_video(long_config(7, 40, 32, tail_speed=15.0, fast_fraction=1.0))
    assert fast.speeds.mean(axis=0).min() > 1.4
    calls = []
    flow_driver.run_main(fmt.MixConfig, lambda cfg, run, init, resume, log: calls.append(cfg), "x",
                         ["--run", "r", "--fast-fraction", "0.5"])
    c = fmt.realistic_config(fmt.TRAIN_SEED0 + 1, 8, 64, np.random.default_rng(0), calls[0])
    assert calls[0].fast_fraction == 0.5 and c.fast_fraction == 0.5 and c.realistic


def test_bad_fraction_is_a_one_line_error():
    with pytest.raises(ValueError, match="fast_fraction"):
        realistic_velocity(np.random.default_rng(0), 5, 15.0, 15.0, 1.5)
