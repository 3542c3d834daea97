"""Cost of SLM-SAM2's short-long memory per propagated slice, against SAM2's memory.

Usage: ``python benchmarks/slm_speed.py [--model sam2.1-tiny] [--size 512] [--slices 16] [--repeats 3]``.
Random weights (the cost does not depend on them); the image embeddings are computed once and
cached, so the timing is of the tracking step (memory attention(s), fuser, decoder, memory encoder).
Runs are interleaved (sam2, slm, sam2, slm, ...) so a loaded machine affects both alike.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sam2.1-tiny")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from napari_sam2med.engine import Session, run_to_end
    from napari_sam2med.io import FrameStack
    from napari_sam2med.sam2 import load_model

    model = load_model(a.model, image_size=a.size, random_init=True, device=a.device)
    rng = np.random.default_rng(0)
    stack = FrameStack((rng.random((a.slices, 96, 96)) * 255).astype(np.uint8))
    sessions = {m: Session(model, stack, memory=m, cache_size=a.slices + 1) for m in ("sam2", "slm")}
    for s in sessions.values():
        s.add_points(1, 0, [[48, 48]], [1])
        run_to_end(s.propagate("forward"))  # warm-up: fills the embedding cache
    times = {m: [] for m in sessions}
    for _ in range(a.repeats):
        for m, s in sessions.items():
            t0 = time.perf_counter()
            run_to_end(s.propagate("forward"))
            times[m].append((time.perf_counter() - t0) / (a.slices - 1))
    res = {m: {"ms_per_slice_median": 1e3 * float(np.median(t)), "ms_per_slice_all": [1e3 * x for x in t]}
           for m, t in times.items()}
    res["slm_over_sam2"] = res["slm"]["ms_per_slice_median"] / res["sam2"]["ms_per_slice_median"]
    res["config"] = vars(a)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
