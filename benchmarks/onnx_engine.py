"""Exported parts alone: our PyTorch path vs ONNX Runtime vs OpenVINO (CPU), same weights, same inputs.

Parts: the image encoder (batch 1), the memory attention at the steady-state memory of
propagation (``num_maskmem`` spatial memories and 16 object pointers) and the decoder + memory
encoder of a tracked frame, for 1 and 4 objects. Each part
is exported once (timed) into a cache folder; then the engines are timed round-robin (one run of
each in turn, so that a change in machine load hits all of them), after one warm-up each; each
figure is the minimum over ``--runs``. The markdown table goes to stdout (or ``--md``).

    python benchmarks/onnx_engine.py --sizes 256 1024 --threads 1 --runs 5
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


def round_robin(fns: dict, runs: int) -> dict:
    """Minimum seconds of each callable over ``runs`` rounds (one warm-up each first)."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _memory_inputs(model, objects: int):
    cfg = model.config
    h = model.image_size // 16
    mem_dim = model.memory_attention.layers[0].cross_attn_image.kv_in_dim
    n_ptr = 16 * (cfg.d_model // mem_dim)
    m = cfg.num_maskmem * h * h + n_ptr
    return dict(curr=[torch.randn(h * h, objects, cfg.d_model)], curr_pos=[torch.randn(h * h, objects, cfg.d_model)],
                memory=torch.randn(m, objects, mem_dim), memory_pos=torch.randn(m, objects, mem_dim),
                num_obj_ptr_tokens=n_ptr)


def bench_size(model_name: str, size: int, threads: int, runs: int, folder: Path, runtimes: list[str],
               objects_list=(1, 4)) -> list[dict]:
    from napari_sam2med.engine.encoders import TorchEncoder
    from napari_sam2med.engine.onnx_engine import OnnxEncoder
    from napari_sam2med.engine.onnx_heads import OnnxTrackHeads
    from napari_sam2med.engine.onnx_memattn import OnnxMemoryAttention
    from napari_sam2med.engine.propagation import torch_heads
    from napari_sam2med.sam2 import build_model, get_config

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(get_config(model_name, size)).eval().requires_grad_(False)
    x = torch.randn(1, 3, size, size)
    exports, encoders, attentions = {}, {"torch": TorchEncoder(model)}, {"torch": model.memory_attention}
    heads = {"torch": lambda pix, feats: torch_heads(model, pix, feats)}
    with torch.inference_mode():
        for rt in runtimes:
            t0 = time.perf_counter()
            encoders[rt] = OnnxEncoder(model, folder=folder, threads=threads, runtime=rt)
            attentions[rt] = OnnxMemoryAttention(model, folder=folder, threads=threads, runtime=rt)
            heads[rt] = OnnxTrackHeads(model, folder=folder, threads=threads, runtime=rt)
            exports[rt] = time.perf_counter() - t0  # export (first runtime) or load/compile
        rows = []
        ref = ref_feats = encoders["torch"](x)
        outs = {rt: encoders[rt](x) for rt in runtimes}
        diffs = {rt: max((a - b).abs().max().item() for a, b in zip(
            (ref.vision, *ref.high_res), (o.vision, *o.high_res))) for rt, o in outs.items()}
        t = round_robin({k: (lambda e=e: e(x)) for k, e in encoders.items()}, runs)
        rows.append(dict(part="encoder", objects=1, times=t, diffs=diffs))
        for objects in objects_list:
            kw = _memory_inputs(model, objects)
            ref = model.memory_attention(**kw)
            diffs = {rt: (attentions[rt](**kw) - ref).abs().max().item() for rt in runtimes}
            t = round_robin({k: (lambda a=a, kw=kw: a(**kw)) for k, a in attentions.items()}, runs)
            rows.append(dict(part="memory attention", objects=objects, times=t, diffs=diffs))
        for objects in objects_list:
            feats = ref_feats.expand(objects)
            pix = feats.vision + 0.1
            low = torch_heads(model, pix, feats).low_res_masks
            diffs = {rt: (heads[rt](pix, feats).low_res_masks - low).abs().max().item() for rt in runtimes}
            t = round_robin({k: (lambda f=f, feats=feats, pix=pix: f(pix, feats)) for k, f in heads.items()}, runs)
            rows.append(dict(part="decoder + memory encoder", objects=objects, times=t, diffs=diffs))
    for r in rows:
        r.update(model=model_name, size=size, threads=threads, exports=exports)
        print(r, flush=True)
    return rows


def to_markdown(rows: list[dict], runs: int, runtimes: list[str], load_before, load_after) -> str:
    import onnxruntime

    try:
        import openvino
        ov = f", openvino {openvino.__version__.split('-')[0]}"
    except ImportError:
        ov = ""
    lines = [
        f"CPU: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}{ov}; min of {runs} round-robin runs after a warm-up, random-init weights. "
        f"Load average {load_before[0]:.1f} before / {load_after[0]:.1f} after.",
        "",
        "| part | px | objects | threads | torch s | " + " | ".join(f"{r} s (speed-up, max diff)" for r in runtimes)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(runtimes),
    ]
    for r in rows:
        t = r["times"]
        cells = [f"{t[rt]:.3f} ({t['torch'] / t[rt]:.2f}×, {r['diffs'][rt]:.0e})" for rt in runtimes]
        lines.append(f"| {r['part']} | {r['size']} | {r['objects']} | {r['threads']} | {t['torch']:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1-tiny")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 4], help="object batches of the tracking parts")
    ap.add_argument("--runtimes", nargs="+", default=["onnx", "openvino"], choices=["onnx", "openvino"])
    ap.add_argument("--cache", default=None, help="export cache folder (default: a temporary one)")
    ap.add_argument("--md", default=None, help="write the markdown table to this file (stdout otherwise)")
    args = ap.parse_args()
    from napari_sam2med.engine.onnx_runtime import runtime_available

    runtimes = [r for r in args.runtimes if runtime_available(r)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.cache or tmp)
        rows = [r for s in args.sizes for t in args.threads
                for r in bench_size(args.model, s, t, args.runs, folder, runtimes, args.objects)]
    md = to_markdown(rows, args.runs, runtimes, load_before, os.getloadavg())
    if args.md:
        Path(args.md).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
