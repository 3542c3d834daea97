"""In-vessel EPE by ground-truth speed on long realistic videos: where the flow error is.

Runs SAM2Flow (``SAM2FlowEstimator(span=k)`` for each ``--spans`` k; 1 = plain) and TV-L1 over
``long_set(n, frames, size, seed)`` and prints one markdown row per method: the share of
in-vessel pixels per speed bin, the EPE per bin, overall and per video. The default seeds are a
*selection* range (``LONG_SELECTION_SEED0 + 500_000 ..``, drawn exactly like the reported long
set: 8 realistic videos x 300 frames, 64x64); choose options there, never on ``LONG_SEED0``.

Run::

    PYTHONPATH=src python benchmarks/flow_speed_bins.py [--n 8 --frames 300 --spans 1 4 --json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from napari_sam2med.flow.metrics import endpoint_error

BINS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class BinnedEPE:
    """Per-speed-bin in-vessel EPE sums (bins of ground-truth speed, px/frame)."""

    def __init__(self, bins=BINS):
        self.edges = np.asarray(bins[1:-1])
        self.sums = np.zeros(len(bins) - 1)
        self.counts = np.zeros(len(bins) - 1)

    def update(self, flow: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> None:
        """Add one pair's (H, W, 2) estimate and ground truth inside ``mask``."""
        bins = np.digitize(np.linalg.norm(gt[mask], axis=-1), self.edges)
        err = endpoint_error(flow[mask], gt[mask])
        self.sums += np.bincount(bins, weights=err, minlength=len(self.sums))
        self.counts += np.bincount(bins, minlength=len(self.sums))

    def epe(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)

    def overall(self) -> float:
        return float(self.sums.sum() / max(self.counts.sum(), 1))


def run(n: int, frames: int, size: int, seed: int, spans, speed: float, tvl1: bool = True, weights=None) -> dict:
    """Binned EPE of each method over the set (one pass per video, all methods on it)."""
    import torch

    torch.set_num_threads(1)
    from napari_sam2med.flow.estimators.classical import TVL1Estimator
    from napari_sam2med.flow.estimators.sam2flow import SAM2FlowEstimator, load_flow_model
    from napari_sam2med.flow.synthetic import long_set, prompts_for

    model = load_flow_model(weights)
    makers = {("sam2flow" if k == 1 else f"sam2flow span {k}"):
              (lambda k=k: SAM2FlowEstimator(model, span=k, span_speed=speed)) for k in spans}
    if tvl1:
        makers["tvl1"] = TVL1Estimator
    acc = {name: BinnedEPE() for name in makers}
    per_video = {name: [] for name in makers}
    seconds = {name: 0.0 for name in makers}
    for i, video in enumerate(long_set(n, frames, size, seed)):
        mask, rois = video.vessel_ids > 0, prompts_for(video)
        for name, make in makers.items():
            est, one = make(), BinnedEPE()
            t0 = time.perf_counter()
            est.reset(video.frames[0], rois)
            for t in range(frames - 1):
                flow = est.step(video.frames[t + 1]).flow
                acc[name].update(flow, video.flow[t], mask)
                one.update(flow, video.flow[t], mask)
            seconds[name] += time.perf_counter() - t0
            per_video[name].append(one.overall())
        print(f"video seed {seed + i} done", file=sys.stderr, flush=True)
    counts = next(iter(acc.values())).counts
    return {"bins": list(BINS), "share": (counts / counts.sum()).tolist(), "seed": seed, "n": n, "frames": frames,
            "rows": {name: {"epe_bins": a.epe().tolist(), "epe": a.overall(), "per_video": per_video[name],
                            "seconds": seconds[name]} for name, a in acc.items()}}


def markdown(result: dict) -> str:
    bins = result["bins"]
    head = " | ".join(f"{a:g}-{b:g}" for a, b in zip(bins[:-1], bins[1:]))
    lines = [f"| method | {head} | all | per video |", "|---" * (len(bins) + 2) + "|",
             "| share of pixels | " + " | ".join(f"{s:.3f}" for s in result["share"]) + " | 1 | |"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{x:.2f}" for x in row["epe_bins"]) + f" | {row['epe']:.3f} | "
                     + " ".join(f"{x:.2f}" for x in row["per_video"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from napari_sam2med.flow.estimators.sam2flow import SPAN_SPEED
    from napari_sam2med.flow.synthetic import LONG_SELECTION_SEED0

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=LONG_SELECTION_SEED0 + 500_000, help="first seed (selection range)")
    p.add_argument("--spans", type=int, nargs="+", default=[1, 4], help="SAM2Flow span values (1 = plain)")
    p.add_argument("--speed", type=float, default=SPAN_SPEED, help="span fusion speed scale (px/frame)")
    p.add_argument("--no-tvl1", action="store_true")
    p.add_argument("--weights", default=None, help="SAM2Flow weights file (default: the shipped weights)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    result = run(args.n, args.frames, args.size, args.seed, args.spans, args.speed, not args.no_tvl1, args.weights)
    print(markdown(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
