"""A click while the background precompute encodes another slice: with and without preemption (issue 15).

Engine level (no Qt), paired and interleaved so that a changing machine load hits both modes alike: slice 0
is cached (the slice the user dwelt on); a background ``ensure(k, background=True)`` (what the precompute
runs) encodes a fresh slice ``k``; ``--lead`` seconds into that encode the user clicks on slice 0
(``segment_slice``: cache hit + mask decoder). Timed: the click's wall time and its thread's CPU time,
for the cache's ``preempt`` on (the encode in flight is stopped) and off (it runs on beside the click),
and with no background encode at all.

    python benchmarks/precompute_preempt.py --engine openvino --threads 2 --trials 8
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import torch
from ui_responsiveness import print_click_table  # benchmarks/ is the script's folder

from napari_sam2med.engine import Session
from napari_sam2med.engine.embedding_cache import attach_cache
from napari_sam2med.engine.preempt import Preempted
from napari_sam2med.sam2 import load_model


def click(session, z, k):
    session.clear_prompts(1)
    session.add_points(1, z, [[200 + k, 180 + k]], [1])
    t, c = time.perf_counter(), time.thread_time()
    session.segment_slice(z)
    return 1000 * (time.perf_counter() - t), 1000 * (time.thread_time() - c)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1-tiny")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--engine", default="openvino")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trials", type=int, default=8, help="clicks per mode")
    p.add_argument("--lead", type=float, default=0.3, help="seconds into the background encode the click comes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model, image_size=args.image_size, random_init=True, device="cpu", progress=False)
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (4 + args.trials * 2, 512, 512), dtype=np.uint8)
    session = Session(model, stack, engine=args.engine)
    cache = attach_cache(session, 4096)
    load0 = os.getloadavg()
    cache.get(0)  # export / compile (once) and the dwelt-on slice
    cache.get(1)
    t0 = time.perf_counter()
    cache.get(2)
    encode_s = time.perf_counter() - t0
    for k in range(3):
        click(session, 0, k)  # warm-up of the decoder
    rows: dict[str, list] = {"no background encode": [], "background encode, preempted": [],
                             "background encode, not preempted": []}
    nxt = 3
    for trial in range(args.trials):
        for mode in ("no background encode", "background encode, preempted", "background encode, not preempted"):
            time.sleep(cache.yield_s + 0.05)
            if mode == "no background encode":
                time.sleep(args.lead)  # the same pause before every click
                rows[mode].append(click(session, 0, trial))
                continue
            cache.preempt = mode == "background encode, preempted"
            idx, nxt = nxt, nxt + 1

            def background(idx=idx):
                try:
                    cache.ensure(idx, background=True)
                except Preempted:
                    pass

            worker = threading.Thread(target=background)
            worker.start()
            time.sleep(args.lead)
            rows[mode].append(click(session, 0, trial))
            worker.join()
    load1 = os.getloadavg()
    print(f"## Click during a background encode ({args.model} @ {args.image_size} px, engine "
          f"{session.encoder.name}, {args.threads} thread(s), random weights, one encode {encode_s:.2f} s, "
          f"click {args.lead:g} s into it; load average {load0[0]:.1f} -> {load1[0]:.1f})\n")
    print_click_table("click on a cached slice", rows)
    print(f"\nbackground encodes preempted: {cache.preempted}; every click's wall ms: "
          + "; ".join(f"{k}: {' '.join(f'{v[0]:.0f}' for v in vals)}" for k, vals in rows.items()))


if __name__ == "__main__":
    main()
