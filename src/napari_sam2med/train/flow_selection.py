"""Choose between SAM2Flow weights on the selection sets (never on the reported sets).

* 12-frame selection set: ``validation_set(seed=777)`` (12 videos, 128x128x12), in-vessel EPE;
* long selection set: ``long_set(3, 200, 64, LONG_SELECTION_SEED0)``, in-vessel EPE overall and
  in the first / last 50 pairs.

Rule used for the shipped weights: among weights whose long-set last-50 EPE is at most 1.2x
their first-50 EPE and whose 12-frame EPE is not worse than the previous shipped weights',
keep the lowest sum of the two EPEs.

Run::

    python -m napari_sam2med.train.flow_selection OUT.json WEIGHTS.pt [WEIGHTS.pt ...]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from ..flow.estimators.sam2flow import SAM2FlowEstimator, load_flow_model
from ..flow.metrics import MetricAccumulator
from ..flow.synthetic import LONG_SELECTION_SEED0, long_set, prompts_for, validation_set

__all__ = ["short_selection_epe", "long_selection_epe", "main"]


def short_selection_epe(model) -> float:
    """In-vessel EPE on the 12-frame selection set."""
    acc, est = MetricAccumulator(), SAM2FlowEstimator(model)
    for video in validation_set(seed=777):
        mask = video.vessel_ids > 0
        est.reset(video.frames[0], prompts_for(video, seed=1))
        for t in range(len(video.frames) - 1):
            acc.update(est.step(video.frames[t + 1]).flow, video.flow[t], mask)
    return acc.result().epe


def long_selection_epe(model, n: int = 3, n_frames: int = 200) -> tuple[float, float, float]:
    """(overall, first 50 pairs, last 50 pairs) in-vessel EPE on the long selection set."""
    first, last, every = [], [], []
    est = SAM2FlowEstimator(model)
    for video in long_set(n, n_frames, 64, LONG_SELECTION_SEED0):
        mask = video.vessel_ids > 0
        est.reset(video.frames[0], prompts_for(video))
        errs = [np.linalg.norm(est.step(video.frames[t + 1]).flow - video.flow[t], axis=-1)[mask].mean()
                for t in range(n_frames - 1)]
        first, last, every = first + errs[:50], last + errs[-50:], every + errs
    return float(np.mean(every)), float(np.mean(first)), float(np.mean(last))


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    out = {}
    for weights in argv[1:]:
        t0 = time.perf_counter()
        model = load_flow_model(weights)
        overall, first, last = long_selection_epe(model)
        out[weights] = {"short_epe": short_selection_epe(model), "long_epe": overall, "long_first50": first,
                        "long_last50": last, "s": time.perf_counter() - t0}
        print(weights, json.dumps(out[weights]), flush=True)
    with open(argv[0], "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
