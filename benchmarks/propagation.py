"""Propagation speed and memory: ours vs the official SAM2VideoPredictor, same weights, same stack.

Each configuration runs in a fresh subprocess so that peak host memory (ru_maxrss) and peak GPU
memory belong to that run alone; the implementations of one configuration run back to back. The
official predictor is fed the frames from memory (its ``load_video_frames`` is replaced by the
preprocessed tensor it would hold), never from JPEG. ``--impls`` takes ``official`` and
``ours`` / ``ours-ENGINE`` (ENGINE: torch, onnx, openvino, auto; ``ours`` is ``ours-torch``). ONNX
parts are exported into ``--cache`` before the timed section (the export time is reported apart).

    python benchmarks/propagation.py --frames 100 --objects 1 4 --image-size 256 \
        --impls official ours ours-onnx --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


class SyntheticVideo:
    """A lazily generated uint8 (T, H, W) video of drifting bright disks (nothing held in memory)."""

    def __init__(self, frames: int, size: int):
        self.shape = (frames, size, size)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, t: int) -> np.ndarray:
        n = self.shape[1]
        yy, xx = np.mgrid[:n, :n]
        rng = np.random.default_rng(t)
        img = 30 + 25 * rng.random((n, n))
        for k in range(4):
            r = n * (0.25 + 0.5 * ((k // 2) + 0.1 * np.sin(t / 15 + k)) / 1.2)
            c = n * (0.25 + 0.5 * ((k % 2) + 0.1 * np.cos(t / 20 + k)) / 1.2)
            img[(yy - r) ** 2 + (xx - c) ** 2 < (0.08 * n) ** 2] = 120 + 30 * k
        return img.astype(np.uint8)

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self.frame(int(idx))
        if isinstance(idx, tuple) and isinstance(idx[0], (int, np.integer)):
            return self.frame(int(idx[0]))[idx[1:]]
        raise TypeError("SyntheticVideo supports integer frame indexing only")


def prompts(size: int, objects: int) -> list[tuple[int, list[float]]]:
    centres = [(0.25 + 0.5 * (k // 2) / 1.2, 0.25 + 0.5 * (k % 2) / 1.2) for k in range(4)]
    return [(k + 1, [size * centres[k][0], size * centres[k][1]]) for k in range(objects)]


def build_models(name: str, image_size: int, device: str):
    import torch

    from napari_sam2med.sam2 import build_model, get_config

    torch.manual_seed(0)
    ours = build_model(get_config(name, image_size))
    return ours.to(device)


def run_ours(args) -> dict:
    import torch
    import zarr

    from napari_sam2med.engine import Session
    from napari_sam2med.io import FrameStack

    model = build_models(args.model, args.image_size, args.device).eval().requires_grad_(False)
    video = SyntheticVideo(args.frames, args.frame_size)
    engine = args.impl.partition("-")[2] or "torch"
    session = Session(model, FrameStack(video), cache_size=2, engine=engine)
    t0 = time.perf_counter()
    if engine != "torch":  # export (or load) every part before timing, as a second session would
        with torch.inference_mode():
            session.encoder.memory_attention()
    export_s = time.perf_counter() - t0
    for oid, rc in prompts(args.frame_size, args.objects):
        session.add_points(oid, 0, [rc], [1])
    with tempfile.TemporaryDirectory() as tmp:
        out = zarr.create_array(store=f"{tmp}/labels.zarr", shape=video.shape, chunks=(1, *video.shape[1:]),
                                dtype="uint8")
        t0 = time.perf_counter()
        n = sum(1 for _ in session.propagate("forward", out=out))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    attn = session.encoder.memory_attention()
    return {"frames_done": n, "seconds": dt, "export_s": export_s, "engine": session.encoder.name,
            "attention": "torch" if attn is None else getattr(attn, "name", "?")}


def run_official(args) -> dict:
    import sam2.sam2_video_predictor as vp
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from napari_sam2med.engine import frame_to_tensor

    cfg = {"sam2.1-tiny": "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2-tiny": "configs/sam2/sam2_hiera_t.yaml"}
    pred = build_sam2_video_predictor(cfg[args.model], ckpt_path=None, device=args.device, mode="eval",
                                      hydra_overrides_extra=[f"++model.image_size={args.image_size}"])
    pred.load_state_dict(build_models(args.model, args.image_size, "cpu").state_dict(), strict=True)
    pred.fill_hole_area = 0
    video = SyntheticVideo(args.frames, args.frame_size)
    t0 = time.perf_counter()
    # What the official init_state holds: every preprocessed frame (its offload option keeps them on CPU).
    images = torch.cat([frame_to_tensor(np.repeat(video[t][..., None], 3, -1) / 255.0, args.image_size)
                        for t in range(args.frames)])
    vp.load_video_frames = lambda **kw: (images, args.frame_size, args.frame_size)
    attend = pred.memory_attention.forward  # CPU bf16-only memory crash workaround (see tests)
    pred.memory_attention.forward = lambda curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0: \
        attend(curr, memory.float(), curr_pos, memory_pos.float(), num_obj_ptr_tokens)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if args.device.startswith("cuda") else \
        torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), autocast:
        state = pred.init_state("in-memory", offload_video_to_cpu=True)
        for oid, (r, c) in prompts(args.frame_size, args.objects):
            pred.add_new_points_or_box(state, 0, oid, points=[[c, r]], labels=[1])
        n = 0
        for _, _, masks in pred.propagate_in_video(state):
            (masks > 0).cpu().numpy()
            n += 1
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"frames_done": n, "seconds": time.perf_counter() - t0}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    res = (run_official if args.impl == "official" else run_ours)(args)
    res["fps"] = res["frames_done"] / res["seconds"]
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    print("RESULT " + json.dumps(res))


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name:"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1-tiny", choices=["sam2.1-tiny", "sam2-tiny"])
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--frame-size", type=int, default=256)
    p.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--objects", type=int, nargs="+", default=[1, 4])
    p.add_argument("--impls", nargs="+", default=["ours", "official"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=None, help="ONNX export cache ($SAM2MED_CACHE; default: a temporary folder)")
    p.add_argument("--md", default=None, help="append the markdown table to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.frames, args.objects = args.frames[0], args.objects[0]
        return worker(args)
    import os

    tmp_cache = tempfile.TemporaryDirectory()
    env = dict(os.environ, SAM2MED_CACHE=args.cache or tmp_cache.name)
    load_before = os.getloadavg()
    rows = []
    for frames in args.frames:
        for objects in args.objects:
            for impl in args.impls:
                cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--model", args.model,
                       "--image-size", str(args.image_size), "--frame-size", str(args.frame_size),
                       "--frames", str(frames), "--objects", str(objects), "--device", args.device,
                       "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
                if not line:
                    print(out.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"{impl} {frames}x{objects} failed")
                r = json.loads(line[0][7:])
                rows.append((impl, frames, objects, r))
                print(impl, frames, objects, r, flush=True)
    import torch

    tmp_cache.cleanup()
    load_after = os.getloadavg()
    dev = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU ({_cpu_name()}, {args.threads} threads)"
    lines = [f"\n### Propagation: {args.model}, image size {args.image_size}, {args.frame_size}² frames, {dev}, "
             f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after\n",
             "| impl | frames | objects | frames/s | vs official | peak host MB | peak GPU MB | export s |",
             "|---|---|---|---|---|---|---|---|"]
    official = {(f, o): r["fps"] for impl, f, o, r in rows if impl == "official"}
    for impl, frames, objects, r in rows:
        gpu = "–" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}"
        ref = official.get((frames, objects))
        ratio = "–" if ref is None else f"{r['fps'] / ref:.2f}×"
        exp = f"{r['export_s']:.0f}" if r.get("export_s") else "–"
        lines.append(f"| {impl} | {frames} | {objects} | {r['fps']:.3f} | {ratio} | {r['peak_rss_mb']:.0f} | {gpu} | "
                     f"{exp} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        with open(args.md, "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
