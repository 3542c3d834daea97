"""Fine-tune SAM2Flow on long synthetic videos with truncated back-propagation through time.

Why: the v1 weights were trained on 3-frame clips, so the feedback loop (warm start from the
previous pair, memory, ROI gate) never ran for more than two pairs in training, and on long
videos the warm start made the flow grow without bound (benchmarks/RESULTS.md, "long videos").

Recipe
------
* Each sequence: ``batch`` synthetic videos of ``size``x``size`` px and ``L + 1`` frames
  (training seeds ``TRAIN_SEED0 + 1_000_000 * seed + k``, disjoint from every held-out set),
  random flips / transposes of the whole sequence, 2 prompted ROIs per video.
* The sequence is streamed through the model in windows of ``chunk`` pairs. After each window
  the loss is back-propagated and the optimizer steps; the memory bank (warm start, memory
  entries, ROI gate) is carried into the next window, detached (truncated BPTT). So the model
  is trained on the state it will see after ``L`` pairs, not only on a fresh bank.
* Curriculum on length: ``L`` ramps from ``min_len`` to ``max_len`` pairs over the first
  ``curriculum`` fraction of the run (``max_len >= 32``).
* Loss, schedule and clipping as in :mod:`napari_sam2med.train.flow_training`.
* Checkpoints (:mod:`.flow_driver`): ``RUN/last.pt`` (model + optimizer + step, for
  ``--resume``) every ``ckpt_minutes`` and fp16 weights ``RUN/step_XXXXXX.pt`` for selection.
  Never writes ``models/``: the shipped file changes only by an explicit copy after selection.

Run::

    python -m napari_sam2med.train.flow_long_training --run runs/flow_long \\
        --init models/sam2flow_v1.pt --max-minutes 100 --threads 1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..flow.net.model import SAM2Flow, SAM2FlowConfig
from ..flow.synthetic import SyntheticConfig, make_video
from .flow_driver import open_run, run_main
from .flow_training import compute_loss

__all__ = ["LongTrainConfig", "LongSequenceSampler", "train_long", "main", "TRAIN_SEED0"]

TRAIN_SEED0 = 50_000_000


@dataclass
class LongTrainConfig:
    """Hyper-parameters of the long-unroll fine-tuning (see module docstring)."""

    steps: int = 100_000
    max_minutes: float = 90.0
    batch: int = 4
    size: int = 64
    chunk: int = 4
    min_len: int = 8
    max_len: int = 48
    curriculum: float = 0.3
    iters: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup: float = 0.02
    gamma: float = 0.8
    vessel_weight: float = 10.0
    roi_weight: float = 5.0
    points: int = 5
    rois: int = 2
    ckpt_minutes: float = 4.0
    snapshot_minutes: float = 10.0
    seed: int = 0


def _prompt_points(rng, mask, background, n_slots):
    from scipy import ndimage as ndi

    inner = ndi.binary_erosion(mask)
    pool_pos = np.argwhere(inner if inner.any() else mask)
    pool_neg = np.argwhere(background)
    n_pos = int(rng.integers(1, 4))
    n_neg = int(rng.integers(0, 3)) if len(pool_neg) else 0
    pts = np.zeros((n_slots, 2), np.float32)
    lab = np.full(n_slots, -1, np.int64)
    both = [pool_pos[rng.integers(len(pool_pos), size=n_pos)]]
    if n_neg:
        both.append(pool_neg[rng.integers(len(pool_neg), size=n_neg)])
    both = np.concatenate(both)
    pts[: len(both)] = both
    lab[:n_pos], lab[n_pos : len(both)] = 1, 0
    return pts, lab


class LongSequenceSampler:
    """Batches of whole long synthetic sequences (frames, flow, ROI masks, vessel mask, prompts)."""

    def __init__(self, cfg: LongTrainConfig, next_seed: int | None = None, video_config=None):
        self.cfg = cfg
        # ``video_config(seed, n_frames, size, rng) -> SyntheticConfig``; default: the v1 generator
        self.video_config = video_config or (lambda seed, n, size, rng: SyntheticConfig(
            height=size, width=size, n_frames=n, seed=seed))
        self.next_seed = TRAIN_SEED0 + 1_000_000 * cfg.seed if next_seed is None else next_seed
        self.rng = np.random.default_rng(self.next_seed)

    def _one(self, n_pairs: int):
        c, rng = self.cfg, self.rng
        while True:
            self.next_seed += 1
            video = make_video(self.video_config(self.next_seed, n_pairs + 1, c.size, rng))
            ids = video.vessel_ids
            present, counts = np.unique(ids[ids > 0], return_counts=True)
            present = present[counts >= 20]
            if len(present):
                break
        chosen = rng.choice(present, size=c.rois, replace=len(present) < c.rois)
        frames, flow, vessel = video.frames, video.flow, ids > 0
        masks = np.stack([ids == v for v in chosen])
        pts, labs = zip(*(_prompt_points(rng, m, ids == 0, c.points) for m in masks))
        pts = np.stack(pts)
        if rng.random() < 0.5:  # flips / transpose: the flow components follow the axes
            frames, flow, masks, vessel = frames[:, ::-1], flow[:, ::-1] * [-1, 1], masks[:, ::-1], vessel[::-1]
            pts[..., 0] = c.size - 1 - pts[..., 0]
        if rng.random() < 0.5:
            frames, flow, masks, vessel = frames[:, :, ::-1], flow[:, :, ::-1] * [1, -1], masks[:, :, ::-1], vessel[:, ::-1]
            pts[..., 1] = c.size - 1 - pts[..., 1]
        if rng.random() < 0.5:
            frames, flow = frames.transpose(0, 2, 1), flow.transpose(0, 2, 1, 3)[..., ::-1]
            masks, vessel = masks.transpose(0, 2, 1), vessel.T
            pts = pts[..., ::-1]
        return (np.ascontiguousarray(a) for a in (frames, flow, masks, vessel, pts, np.stack(labs)))

    def sequence(self, n_pairs: int):
        """``frames`` (B, T, 1, S, S), ``flow`` (B, T-1, 2, S, S), ``masks`` (B, R, S, S), ``vessel``
        (B, S, S), ``points`` (B, R, P, 2), ``labels`` (B, R, P) for ``T = n_pairs + 1``."""
        items = [tuple(self._one(n_pairs)) for _ in range(self.cfg.batch)]
        frames, flow, masks, vessel, pts, labs = (torch.from_numpy(np.stack(x)) for x in zip(*items))
        return (frames.float()[:, :, None], flow.float().permute(0, 1, 4, 2, 3), masks.float(), vessel.float(),
                pts.float(), labs)


def sequence_length(cfg: LongTrainConfig, progress: float) -> int:
    """Pairs per sequence at training ``progress`` (curriculum), a multiple of ``chunk``."""
    ramp = min(progress / cfg.curriculum, 1.0) if cfg.curriculum > 0 else 1.0
    n = cfg.min_len + ramp * (cfg.max_len - cfg.min_len)
    return max(cfg.chunk, int(round(n / cfg.chunk)) * cfg.chunk)


def train_long(cfg: LongTrainConfig, run: Path, init: Path | None = None, resume: bool = False, log=print) -> SAM2Flow:
    """Fine-tune per ``cfg`` into the run folder ``run`` (see module docstring)."""
    torch.manual_seed(cfg.seed)
    model = SAM2Flow(SAM2FlowConfig(iters=cfg.iters, feedback="gated"))
    fr = open_run(cfg, run, model, init, resume, log, weight_decay=cfg.weight_decay)
    model.train()
    sampler = LongSequenceSampler(cfg, fr.resumed.get("next_seed"))
    fr.extras = lambda: {"next_seed": sampler.next_seed}
    done = False
    while not done and fr.progress() < 1.0:
        n_pairs = sequence_length(cfg, fr.progress())
        frames, flow, masks, vessel, pts, labs = sampler.sequence(n_pairs)
        bank = model.new_memory()
        window_stats = []
        for t0 in range(0, n_pairs, cfg.chunk):
            progress = fr.progress()
            if progress >= 1.0:
                done = True
                break
            fr.set_lr(progress)
            outputs = model(frames[:, t0 : t0 + cfg.chunk + 1], pts, labs, iters=cfg.iters, bank=bank)
            loss, stats = compute_loss(outputs, flow[:, t0 : t0 + cfg.chunk], masks, vessel, cfg.gamma,
                                       cfg.vessel_weight, cfg.roi_weight)
            fr.optimize(loss)
            bank.detach()  # truncated BPTT: carry the state, not its history
            window_stats.append(stats["epe_vessel"])
            fr.tick()
        if window_stats:
            k = max(len(window_stats) // 4, 1)
            log(f"step {fr.step} t={fr.elapsed():.0f}s L={n_pairs} lr={fr.opt.param_groups[0]['lr']:.2e} "
                f"epe first/last quarter {np.mean(window_stats[:k]):.3f}/{np.mean(window_stats[-k:]):.3f}")
    return fr.finish(init, log)


def main(argv=None) -> None:
    """Command line: ``python -m napari_sam2med.train.flow_long_training --run RUN [--init W] ...``."""
    run_main(LongTrainConfig, train_long, "Fine-tune SAM2Flow on long synthetic videos (truncated BPTT).", argv)


if __name__ == "__main__":
    main()
