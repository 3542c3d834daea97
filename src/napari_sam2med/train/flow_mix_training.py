"""Fine-tune the gated SAM2Flow on the realistic generator: short clips mixed with long unrolls.

Why: the shipped gated weights were trained only on the v1 generator (bright, fast cells) and
are no better than TV-L1 on the long realistic set; the long-unroll-only fine-tune (382 steps,
:mod:`.flow_long_training`) cost 12-frame accuracy. This run keeps the short-clip recipe that
reached 0.38x TV-L1 on the 12-frame set and adds realistic videos and carried-memory unrolls.

Recipe
------
* Short steps (``1 - long_frac`` of the steps): the run-4 clip recipe of
  :mod:`.flow_training` (64x64 crops of 3-frame clips from a refreshed pool of 128x128x8
  videos, batch 4, 2 ROIs), where a fraction ``realistic_frac`` of the pool are realistic
  videos: :func:`flow.synthetic.long_config` (few photons, half contrast, vignetting, motion
  blur, heartbeat), a fast tail up to ``tail_speed`` px/frame in ``fast_fraction`` of the vessels
  (0.2 as in every evaluation set; ``--fast-fraction 0.5`` over-samples fast, smeared cells), non-rigid tissue motion of peak
  0-``tissue_max`` px in ``tissue_frac`` of them, and cell texture sampled from real line
  scans when ``shared/data/flow_linescans`` exists (procedural otherwise).
* Long steps (``long_frac``): truncated BPTT through a realistic 64x64 sequence of ``L``
  pairs in windows of ``chunk`` pairs with the memory bank carried (detached) between
  windows; each window is one optimizer step. ``L`` ramps from ``min_len`` to ``max_len``
  (>= 32) over the first ``curriculum`` of the run.
* ``freeze_gate``: the warm-start gate (``warm_gate.*``) keeps its loaded value (the shipped
  weights': 0.5 everywhere) and is left out of the optimizer, so the fine-tune cannot open it
  (the first mixed run opened it to 0.85 and drifted after ~200 pairs).
* AdamW, lr ``lr`` with warm-up and cosine decay (wall-time driven), clipping 1.0, the
  loss of :func:`.flow_training.compute_loss` (vessel weight 10, ROI weight 5).
* Training seeds ``60_000_000 + 1_000_000 * seed + i``, disjoint from every held-out set.
* Run folder (:mod:`.flow_driver`): ``RUN/last.pt`` (model, optimizer, step, clock, seeds; for ``--resume``) every
  ``ckpt_minutes``; fp16 snapshots ``RUN/step_XXXXXX.pt`` every ``snapshot_minutes`` for
  :mod:`.flow_selection`. Never writes ``models/``.

Run::

    python -m napari_sam2med.train.flow_mix_training --run runs/flow_mix1 \\
        --init models/sam2flow_v1.pt --max-minutes 70 --threads 1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..flow.net.model import SAM2Flow, SAM2FlowConfig
from ..flow.synthetic import SyntheticConfig, long_config, make_video
from .flow_driver import open_run, run_main
from .flow_long_training import LongSequenceSampler, LongTrainConfig, sequence_length
from .flow_training import ClipSampler, TrainConfig, compute_loss

__all__ = ["MixConfig", "realistic_config", "train_mix", "main", "TRAIN_SEED0"]

TRAIN_SEED0 = 60_000_000


@dataclass
class MixConfig:
    """Hyper-parameters of the mixed fine-tune (see module docstring)."""

    steps: int = 100_000
    max_minutes: float = 70.0
    lr: float = 1e-4
    warmup: float = 0.03
    batch: int = 4
    pool: int = 128
    realistic_frac: float = 0.6
    tissue_frac: float = 0.6
    tissue_max: float = 3.0
    tail_speed: float = 15.0
    fast_fraction: float = 0.2
    long_frac: float = 0.25
    long_size: int = 64
    chunk: int = 4
    min_len: int = 8
    max_len: int = 40
    curriculum: float = 0.3
    ckpt_minutes: float = 4.0
    snapshot_minutes: float = 7.0
    seed: int = 0
    freeze_gate: bool = False


def realistic_config(seed: int, n_frames: int, size: int, rng: np.random.Generator, cfg: MixConfig) -> SyntheticConfig:
    """One realistic training video's config (tissue motion in ``tissue_frac`` of them)."""
    motion = float(rng.uniform(0.5, cfg.tissue_max)) if rng.random() < cfg.tissue_frac else 0.0
    return long_config(seed, n_frames, size, tail_speed=cfg.tail_speed, tissue_motion=motion,
                       cell_texture="linescan", fast_fraction=cfg.fast_fraction)


class _MixedClips(ClipSampler):
    """The run-4 clip sampler whose pool mixes realistic and v1 videos."""

    def __init__(self, tcfg: TrainConfig, mix: MixConfig, next_seed: int):
        self.mix, self._seed_rng = mix, np.random.default_rng(next_seed)
        self._start_seed = next_seed
        super().__init__(tcfg)
        self.next_seed = next_seed

    def _new_video(self):
        self._start_seed += 1
        c, seed = self.cfg, self._start_seed
        if self._seed_rng.random() < self.mix.realistic_frac:
            return make_video(realistic_config(seed, c.video_frames, c.video_size, self._seed_rng, self.mix))
        return make_video(SyntheticConfig(height=c.video_size, width=c.video_size, n_frames=c.video_frames, seed=seed))


def train_mix(cfg: MixConfig, run: Path, init: Path | None = None, resume: bool = False, log=print) -> SAM2Flow:
    """Fine-tune per ``cfg`` into the run folder ``run`` (see module docstring)."""
    torch.manual_seed(cfg.seed)
    model = SAM2Flow(SAM2FlowConfig(iters=4, feedback="gated"))
    fr = open_run(cfg, run, model, init, resume, log, freeze_gate=cfg.freeze_gate)
    clip_seed = fr.resumed.get("clip_seed", TRAIN_SEED0 + 1_000_000 * cfg.seed)
    long_seed = fr.resumed.get("long_seed", clip_seed + 500_000)
    tcfg = TrainConfig(batch=cfg.batch, pool=cfg.pool, seed=cfg.seed)
    clips = _MixedClips(tcfg, cfg, clip_seed)
    lcfg = LongTrainConfig(batch=cfg.batch, size=cfg.long_size, chunk=cfg.chunk, min_len=cfg.min_len,
                           max_len=cfg.max_len, curriculum=cfg.curriculum)
    longs = LongSequenceSampler(lcfg, long_seed,
                                video_config=lambda seed, n, size, rng: realistic_config(seed, n, size, rng, cfg))
    fr.extras = lambda: {"clip_seed": clips._start_seed, "long_seed": longs.next_seed}
    rng = np.random.default_rng(cfg.seed + fr.step)
    model.train()
    seq, bank, t0, n_pairs = None, None, 0, 0
    stats_short, stats_long = [], []
    while (progress := fr.progress()) < 1.0:
        elapsed = fr.elapsed()
        fr.set_lr(progress)
        if seq is not None or rng.random() < cfg.long_frac:
            if seq is None:
                n_pairs = sequence_length(lcfg, progress)
                seq, bank, t0 = longs.sequence(n_pairs), model.new_memory(), 0
            frames, flow, masks, vessel, pts, labs = seq
            outputs = model(frames[:, t0 : t0 + cfg.chunk + 1], pts, labs, iters=4, bank=bank)
            loss, stats = compute_loss(outputs, flow[:, t0 : t0 + cfg.chunk], masks, vessel, 0.8, 10.0, 5.0)
            t0 += cfg.chunk
            stats_long.append(stats["epe_vessel"])
            if t0 >= n_pairs:
                seq = None
        else:
            frames, flow, masks, vessel, pts, labs = clips.batch()
            outputs = model(frames, pts, labs, iters=4)
            loss, stats = compute_loss(outputs, flow, masks, vessel, 0.8, 10.0, 5.0)
            clips.refresh()
            stats_short.append(stats["epe_vessel"])
        fr.optimize(loss)
        if bank is not None:
            bank.detach()  # truncated BPTT: carry the state, not its history
        if fr.step % 50 == 0:
            log(f"step {fr.step} t={elapsed:.0f}s lr={fr.opt.param_groups[0]['lr']:.2e} L={n_pairs} "
                f"epe short {np.mean(stats_short[-50:] or [np.nan]):.3f} long {np.mean(stats_long[-50:] or [np.nan]):.3f}")
        fr.tick()
    return fr.finish(init, log)


def main(argv=None) -> None:
    """Command line: ``python -m napari_sam2med.train.flow_mix_training --run RUN [--init W] ...``."""
    run_main(MixConfig, train_mix, "Fine-tune SAM2Flow on realistic short clips + long unrolls.", argv)


if __name__ == "__main__":
    main()
