"""Image encoder alone: our PyTorch path vs the ONNX Runtime engine (CPU), same weights, same input.

For each image size the encoder is exported once (timed) into a temporary cache, then both engines
encode the same normalised image; each figure is the minimum of ``--runs`` runs after one warm-up.
The markdown table is printed (or written to ``--md``) to be pasted into benchmarks/RESULTS.md.

    python benchmarks/onnx_engine.py --sizes 256 1024 --threads 1 2 --runs 5
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def best_of(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_size(model_name: str, size: int, threads: list[int], runs: int, folder: Path) -> list[dict]:
    from napari_sam2med.engine.encoders import TorchEncoder
    from napari_sam2med.engine.onnx_engine import OnnxEncoder
    from napari_sam2med.sam2 import build_model, get_config

    torch.manual_seed(0)
    model = build_model(get_config(model_name, size)).eval()
    x = torch.randn(1, 3, size, size)
    t0 = time.perf_counter()
    OnnxEncoder(model, folder=folder, threads=1)
    export_s = time.perf_counter() - t0
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        ref, ort_enc = TorchEncoder(model), OnnxEncoder(model, folder=folder, threads=t)
        a, b = ref(x), ort_enc(x)
        diff = max((p - q).abs().max().item() for p, q in
                   zip((a.vision, a.high_res[0], a.high_res[1]), (b.vision, b.high_res[0], b.high_res[1])))
        t_torch = best_of(lambda enc=ref: enc(x), runs)
        t_onnx = best_of(lambda enc=ort_enc: enc(x), runs)
        rows.append(dict(model=model_name, size=size, threads=t, torch_s=t_torch, onnx_s=t_onnx,
                         speedup=t_torch / t_onnx, max_diff=diff, export_s=export_s))
        print(rows[-1], flush=True)
    return rows


def to_markdown(rows: list[dict], runs: int, load_before, load_after) -> str:
    lines = [
        f"CPU: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, "
        f"onnxruntime {__import__('onnxruntime').__version__}; min of {runs} runs after a warm-up, batch 1, "
        f"random-init weights. Load average {load_before[0]:.1f} before / {load_after[0]:.1f} after: the machine "
        "was shared with other jobs, so absolute times are inflated and noisy.",
        "",
        "| model | px | threads | torch s | onnxruntime s | speed-up | max abs diff | export s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['size']} | {r['threads']} | {r['torch_s']:.3f} | {r['onnx_s']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['max_diff']:.1e} | {r['export_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1-tiny")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache", default=None, help="export cache folder (default: a temporary one)")
    ap.add_argument("--md", default=None, help="write the markdown table to this file (stdout otherwise)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.cache or tmp)
        rows = [r for s in args.sizes for r in bench_size(args.model, s, args.threads, args.runs, folder)]
    md = to_markdown(rows, args.runs, load_before, os.getloadavg())
    if args.md:
        Path(args.md).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
