"""Flow benchmark on the held-out synthetic validation set (and long / real line-scan checks).

Runs SAM2Flow (when weights exist), TV-L1 and ILK through the same streaming runner
(``napari_sam2med.flow.runner.estimate_flow``) and reports, inside the ground-truth
vessel ROI: mean end-point error (EPE, px), 1/3/5-px accuracy, the union ROI IoU (union of
the method's ROIs against the union of the vessels, pooled over pairs), frame pairs/s and
peak RSS (each method runs in a fresh process). A memory check compares peak RSS for 20
vs 200 streamed frames. ``--long`` runs the long held-out realistic set (per-window EPE,
see ``flow_long_eval.py``); ``--linescan DIR`` the real-speed check on line scans.

Usage::

    PYTHONPATH=src python benchmarks/flow_benchmark.py [--n 12] [--methods tvl1 ilk]
        [--weights PATH] [--md results.md] [--memory-check] [--size 128]
    PYTHONPATH=src python benchmarks/flow_benchmark.py --long [--long-n 8 --long-frames 300 --long-size 64]
        [--long-motion] [--extra-weights MORE.pt ...]
    PYTHONPATH=src python benchmarks/flow_benchmark.py --linescan ../shared/data/flow_linescans
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _default_weights() -> Path | None:
    try:
        from napari_sam2med.flow.estimators.sam2flow import default_weights_path
    except ImportError:
        return None
    path = default_weights_path()
    return path if path.is_file() else None


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _estimator(method: str, weights: str | None):
    from napari_sam2med.flow.command import make_estimator

    return make_estimator(method, weights, device="auto")


def evaluate_method(method: str, n: int, size: int, weights: str | None) -> dict:
    """Metrics of one method over ``validation_set(n)`` (runs in the calling process)."""
    import torch

    torch.set_num_threads(1)
    from napari_sam2med.engine.progress import run_to_end
    from napari_sam2med.flow.metrics import MetricAccumulator, UnionIoU
    from napari_sam2med.flow.runner import estimate_flow
    from napari_sam2med.flow.synthetic import prompts_for, validation_set

    videos = validation_set(n=n, height=size, width=size)
    estimator = _estimator(method, weights)
    acc, roi_iou = MetricAccumulator(), UnionIoU()
    speed_err = []
    timing = {"pairs": 0, "seconds": 0.0}
    for video in videos:
        gt_roi = video.vessel_ids > 0
        clock = [time.perf_counter()]

        def on_step(progress, video=video, gt_roi=gt_roi, clock=clock):
            timing["seconds"] += time.perf_counter() - clock[0]  # the estimator's time only
            acc.update(progress.step.flow, video.flow[progress.step.index], gt_roi)
            roi_iou.update(progress.step.roi_ids, gt_roi)
            timing["pairs"] += 1
            clock[0] = time.perf_counter()

        result = run_to_end(estimate_flow(video.frames, prompts_for(video), estimator), on_step)
        cols = [result.roi_ids.index(i) for i in range(1, video.speeds.shape[1] + 1) if i in result.roi_ids]
        ids = [result.roi_ids[c] for c in cols]
        if cols:
            pred = result.mean_speed_px[:, cols]
            gt = video.speeds[:, [i - 1 for i in ids]]
            speed_err.append(np.nanmean(np.abs(pred - gt)))
    pairs, seconds = timing["pairs"], timing["seconds"]
    m = acc.result()
    return {
        "method": method,
        "videos": len(videos),
        "pairs": pairs,
        "epe": m.epe,
        "acc1": m.acc[1.0],
        "acc3": m.acc[3.0],
        "acc5": m.acc[5.0],
        "roi_union_iou": roi_iou.result(),
        "speed_mae": float(np.mean(speed_err)) if speed_err else float("nan"),
        "pairs_per_s": pairs / seconds if seconds > 0 else float("nan"),
        "peak_rss_mib": _peak_rss_mib(),
    }


def _child(queue, fn, args):
    try:
        queue.put(("ok", fn(*args)))
    except Exception as exc:  # report to the parent instead of hanging it
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_isolated(fn, *args):
    """Run ``fn(*args)`` in a fresh spawned process (clean peak-RSS), return its value."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    status, value = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(value)
    return value


def streamed_peak_rss(n_frames: int, size: int, method: str = "ilk") -> float:
    """Peak RSS (MiB) of streaming ``n_frames`` from an on-disk zarr into a FLOW.zarr."""
    import zarr
    from scipy import ndimage as ndi

    from napari_sam2med.flow.runner import estimate_flow, flow_output
    from napari_sam2med.flow.types import RoiPrompt

    rng = np.random.default_rng(0)
    base = ndi.gaussian_filter(rng.random((size, size)), 2.0).astype(np.float32)
    base = (base - base.min()) / (base.max() - base.min())
    with tempfile.TemporaryDirectory() as tmp:
        video = zarr.open_array(
            f"{tmp}/video.zarr", mode="w", shape=(n_frames, size, size),
            chunks=(1, size, size), dtype="f4",
        )
        for t in range(n_frames):  # write frame by frame: never the whole video in memory
            video[t] = np.roll(base, (t, 2 * t), axis=(0, 1))
        rois = [RoiPrompt(1, np.array([[size / 2, size / 2]]), np.array([1]))]
        with flow_output(f"{tmp}/FLOW.zarr") as group:
            for _ in estimate_flow(video, rois, _estimator(method, None), out=group,
                                   pixel_size=1.0, fps=10.0):
                pass
    return _peak_rss_mib()


def markdown_table(rows: list[dict], size: int) -> str:
    """Format benchmark rows as a markdown table."""
    head = (
        "| method | videos | pairs | EPE (px) | <1px | <3px | <5px | union ROI IoU | speed MAE (px/fr) "
        "| pairs/s | peak RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['method']} | {r['videos']} | {r['pairs']} | {r['epe']:.3f} | {r['acc1']:.3f} "
        f"| {r['acc3']:.3f} | {r['acc5']:.3f} | {r['roi_union_iou']:.3f} | {r['speed_mae']:.3f} "
        f"| {r['pairs_per_s']:.2f} | {r['peak_rss_mib']:.0f} |"
        for r in rows
    ]
    note = f"\nSynthetic validation set, {size}x{size} px, metrics inside the ground-truth vessel ROI.\n"
    return head + "\n".join(lines) + "\n" + note


def pair_throughput(size: int, pairs: int, device: str = "auto", span: int = 1) -> dict:
    """SAM2Flow frame pairs per second at ``size``² with the shipped weights.

    ``span`` > 1: the estimator's k-frame fusion is on (``end_to_end`` only; ``on_device`` is the
    plain pair step).

    ``end_to_end`` streams numpy frames through :class:`SAM2FlowEstimator` (host to device, flow
    and ROI maps back to numpy); ``on_device`` times the model's pair step alone on frames already
    on the device. On CUDA both run under bf16 autocast, as the estimator does.
    """
    import torch

    from napari_sam2med.flow.estimators.sam2flow import SAM2FlowEstimator, load_flow_model
    from napari_sam2med.flow.net.model import pad_to_stride
    from napari_sam2med.flow.types import RoiPrompt

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    est = SAM2FlowEstimator(load_flow_model(device=dev), span=span)
    rng = np.random.default_rng(0)
    frames = [rng.random((size, size), dtype=np.float32) for _ in range(2)]
    rois = [RoiPrompt(1, np.array([[size / 2, size / 2]]), np.array([1]))]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    est.reset(frames[0], rois)
    for i in range(max(5, span + 1)):  # warm-up (allocator, kernels; span buffer full)
        est.step(frames[(i + 1) % 2])
    sync()
    t0 = time.perf_counter()
    for i in range(pairs):
        est.step(frames[(i + 1) % 2])
    sync()
    end_to_end = pairs / (time.perf_counter() - t0)

    model = est.model
    with torch.inference_mode(), est._autocast():  # the estimator's own precision rule
        xs = [pad_to_stride(torch.from_numpy(f)[None, None].to(dev), model.stride)[0] for f in frames]
        feats = [model.encode(x) for x in xs]
        bank = model.new_memory()
        for i in range(5):
            model.pair(feats[i % 2], model.encode(xs[(i + 1) % 2]), bank, est._prompts, est.iters)
        sync()
        t0 = time.perf_counter()
        prev = feats[0]
        for i in range(pairs):
            cur = model.encode(xs[(i + 1) % 2])
            model.pair(prev, cur, bank, est._prompts, est.iters)
            prev = cur
        sync()
        on_device = pairs / (time.perf_counter() - t0)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    return {"device": name, "size": size, "pairs": pairs, "span": span, "end_to_end": end_to_end, "on_device": on_device,
            "dtype": "bf16 autocast" if dev.type == "cuda" else "fp32"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="number of validation videos")
    parser.add_argument("--size", type=int, default=128, help="video height and width")
    parser.add_argument("--methods", nargs="+", default=["sam2flow", "tvl1", "ilk"])
    parser.add_argument("--weights", default=None, help="SAM2Flow weights (default: shipped)")
    parser.add_argument("--extra-weights", nargs="*", default=[], metavar="PATH",
                        help="with --long / --linescan: more SAM2Flow rows (labelled by file name) in the same run")
    parser.add_argument("--span", nargs="*", type=int, default=[], metavar="K",
                        help="with --long: more SAM2Flow rows (--weights) with the k-frame fusion span K; "
                        "with --throughput: time the estimator with the largest K")
    parser.add_argument("--md", default=None, help="append the markdown tables to this file")
    parser.add_argument("--memory-check", action="store_true", help="20 vs 200 streamed frames")
    parser.add_argument("--memory-size", type=int, default=256)
    parser.add_argument("--throughput", type=int, default=0, metavar="SIZE",
                        help="only measure SAM2Flow pairs/s at SIZE x SIZE (e.g. 512)")
    parser.add_argument("--pairs", type=int, default=100, help="pairs timed by --throughput")
    parser.add_argument("--device", default="auto", help="device for --throughput: auto, cuda or cpu")
    parser.add_argument("--long", action="store_true", help="long held-out realistic set, per-window EPE")
    parser.add_argument("--long-n", type=int, default=8, help="videos in the long set (>= 8 to report)")
    parser.add_argument("--long-frames", type=int, default=300)
    parser.add_argument("--long-size", type=int, default=64)
    parser.add_argument("--long-seed", type=int, default=None, help="first seed (default: the held-out LONG_SEED0)")
    parser.add_argument("--long-motion", action="store_true",
                        help="with --long: the LONG_MOTION variant (tissue motion, fast tail) of the set instead")
    parser.add_argument("--linescan", default=None, metavar="DIR", help="real-speed check on flow_linescans/")
    parser.add_argument("--adapt-check", type=int, default=0, metavar="STEPS",
                        help="EPE / forward-backward consistency before and after STEPS of flow-adapt")
    parser.add_argument("--ablation", action="store_true",
                        help="per-window EPE with SAM2Flow's feedback paths cut (warm start, memory, ROI gate)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    if args.long or args.linescan or args.adapt_check or args.ablation:
        return _long_or_linescan(args)

    if args.throughput:
        r = pair_throughput(args.throughput, args.pairs, args.device, max(args.span, default=1))
        text = (f"\nSAM2Flow throughput, {r['size']}x{r['size']}, {r['device']}, {r['dtype']}, span {r['span']}, "
                f"{r['pairs']} pairs: "
                f"{r['on_device']:.1f} pairs/s on device, {r['end_to_end']:.1f} pairs/s end to end\n")
        print(text)
        if args.md:
            with open(args.md, "a", encoding="utf-8") as fh:
                fh.write(text)
        return 0

    default = _default_weights()
    weights = args.weights or (str(default) if default is not None else None)
    rows = []
    for method in args.methods:
        if method == "sam2flow" and weights is None:
            print("skipping sam2flow: no weights (pass --weights)", file=sys.stderr)
            continue
        print(f"running {method} ...", file=sys.stderr)
        rows.append(run_isolated(evaluate_method, method, args.n, args.size, weights))
    text = markdown_table(rows, args.size) if rows else ""

    if args.memory_check:
        small = run_isolated(streamed_peak_rss, 20, args.memory_size)
        large = run_isolated(streamed_peak_rss, 200, args.memory_size)
        ratio = large / small
        verdict = "PASS" if ratio <= 1.10 else "FAIL"
        text += (
            f"\nStreaming memory check ({args.memory_size}x{args.memory_size}, ILK, zarr in/out): "
            f"peak RSS 20 frames {small:.0f} MiB, 200 frames {large:.0f} MiB, "
            f"ratio {ratio:.3f} -> {verdict} (limit 1.10)\n"
        )
    print(text)
    if args.md:
        with open(args.md, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    return 0


def _long_or_linescan(args) -> int:
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import flow_long_eval as fle

    default = _default_weights()
    weights = args.weights or (str(default) if default is not None else None)
    methods = [m for m in args.methods if m != "sam2flow" or weights is not None]
    # (label, method, weights) rows: the methods, then one SAM2Flow row per --extra-weights file
    jobs = [(m, m, weights) for m in methods] + [(f"sam2flow ({Path(w).name})", "sam2flow", w)
                                                 for w in args.extra_weights]
    spans = {f"sam2flow (span {k})": k for k in args.span if k > 1}
    jobs += [(label, "sam2flow", weights) for label in spans]

    def labelled(row, label):
        row["method"] = label
        return row

    text, rows = "", {}
    if args.long:
        from napari_sam2med.flow.synthetic import LONG_SEED0

        seed = LONG_SEED0 if args.long_seed is None else args.long_seed
        for key, motion in [("long_motion", True) if args.long_motion else ("long", False)]:
            rows[key] = []
            for label, m, w in jobs:
                print(f"{key}: {label} ...", file=sys.stderr)
                rows[key].append(labelled(run_isolated(fle.long_curve, m, w, args.long_n, args.long_frames,
                                                       args.long_size, seed, fle.WINDOW, motion,
                                                       spans.get(label, 1)), label))
            text += fle.long_markdown(rows[key])
    if args.linescan and not args.adapt_check:
        rows["linescan"] = [labelled(run_isolated(fle.linescan_check, m, w, args.linescan, name), label)
                            for name in fle.LINESCANS for label, m, w in jobs]
        text += fle.linescan_markdown(rows["linescan"])
    if args.ablation:
        rows["ablation"] = run_isolated(fle.feedback_ablation, weights)
        text += "\n| feedback on | " + " | ".join(f"window {i}" for i in range(6)) + " |\n"
        text += "".join(f"| {k} | " + " | ".join(f"{x:.2f}" for x in v) + " |\n" for k, v in rows["ablation"].items())
    if args.adapt_check:
        r = rows["adapt"] = run_isolated(fle.adapt_check, weights, args.adapt_check, args.linescan)
        syn = r["synthetic"]
        text += (f"\nflow-adapt, {r['steps']} steps: long held-out video (seed LONG_SEED0, {args.long_frames} frames, "
                 f"{args.long_size}²) in-vessel EPE {syn['epe_before']:.3f} -> {syn['epe_after']:.3f} px "
                 f"(adaptation {syn['adapt_s']:.0f} s)")
        if "linescan_fb" in r:
            fb = r["linescan_fb"]
            text += f"; line-scan video forward-backward error {fb['before']:.3f} -> {fb['after']:.3f} px"
        text += "\n"
    text += f"\nSAM2Flow weights: {weights}\n" if "sam2flow" in methods else ""
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.md:
        with open(args.md, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
