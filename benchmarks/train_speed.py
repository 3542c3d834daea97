"""Training speed of ``sam2med train``'s step: steps/s and peak memory, per model and input size.

One step = SAM2's training forward + backward + AdamW update on one clip (``--frames`` slices,
one object, box prompt with one correction click on the first frame), full preset, random weights.
Each configuration runs in its own process, so the peak resident memory (CPU) or the peak CUDA
memory belongs to it alone.

    python benchmarks/train_speed.py --device cpu --threads 2 \
        --configs sam2.1-test:128 sam2med-small-ct:128 sam2.1-tiny:256 sam2.1-tiny:512
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(name: str, size: int, device: str, frames: int, steps: int, threads: int) -> dict:
    import torch

    from napari_sam2med.sam2 import build_model, get_config
    from napari_sam2med.sam2.device import autocast_context
    from napari_sam2med.train.clip_forward import ClipPromptConfig, forward_clip

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(get_config(name, size)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(frames, 3, size, size, device=device)
    masks = torch.zeros(1, frames, size, size, device=device)
    masks[:, :, size // 4: size // 2, size // 3: size // 2] = 1
    prompts = ClipPromptConfig(p_mask=0, p_box=1, p_click=0, p_second_cond=0, max_correction_frames=1,
                               max_correction_points=1)
    times = []
    for i in range(steps + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        with autocast_context(device):
            res = forward_clip(model, images, masks, torch.Generator().manual_seed(i), prompts)
        opt.zero_grad()
        res.loss.total.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    per_step = sum(times[1:]) / steps  # the first step (allocations, caches) is left out
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"model": name, "image_size": size, "device": device, "frames": frames, "threads": threads,
            "s_per_step": per_step, "steps_per_s": 1 / per_step, "peak_mib": peak,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["sam2.1-test:128", "sam2med-small-ct:128", "sam2.1-tiny:256",
                                                    "sam2.1-tiny:512"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        name, size = a.one.split(":")
        print(json.dumps(one(name, int(size), a.device, a.frames, a.steps, a.threads)))
        return
    print("| model | input | device | threads | frames/clip | s/step | steps/s | peak memory (MiB) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for c in a.configs:
        out = subprocess.run([sys.executable, __file__, "--one", c, "--device", a.device, "--frames", str(a.frames),
                              "--steps", str(a.steps), "--threads", str(a.threads)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {r['model']} ({r['params_m']:.1f} M) | {r['image_size']} | {r['device']} | {r['threads']} | "
              f"{r['frames']} | {r['s_per_step']:.2f} | {r['steps_per_s']:.3f} | {r['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
