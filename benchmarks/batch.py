"""``sam2med batch`` throughput: volumes per minute on 1 vs 2 local worker processes, and the
scheduling overhead per volume, with the test model (random weights, seeded, saved once).

For each worker count a fresh ``LocalCluster`` runs :func:`napari_sam2med.batch.runner.run_batch`
(the code behind ``sam2med batch``) on the same volumes into a fresh folder. Reported:

* start-up: cluster up + model loaded on every worker (the first progress step and the first
  completed volume bound it);
* steady rate: volumes/min between the first and the last completed volume;
* overall rate: volumes/min including start-up;
* scheduling overhead per volume: ``steady wall x workers / (volumes - 1) - median in-task seconds``
  (what dask adds around each task), and the round trip of an empty task on the same cluster.

A sequential in-process run of the same function without dask gives the baseline.

    python benchmarks/batch.py --volumes 16 --slices 16 --size 64 [--device cpu|cuda] [--md benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile


def make_volumes(folder: Path, n: int, slices: int, size: int) -> Path:
    """``n`` uint8 volumes with one clicked and one boxed object each, and their manifest."""
    entries = []
    yy, xx = np.mgrid[:size, :size]
    for k in range(n):
        rng = np.random.default_rng(k)
        vol = 40 + 30 * rng.random((slices, size, size))
        for t in range(slices):
            r, c = size * (0.4 + 0.3 * t / slices), size * (0.45 + 0.01 * (k % 10))
            vol[t][(yy - r) ** 2 + (xx - c) ** 2 < (0.15 * size) ** 2] = 190
        tifffile.imwrite(folder / f"v{k:03d}.tif", vol.astype(np.uint8))
        prompts = {"prompts": [{"object": 1, "slice": slices // 2, "points": [[size * 0.55, size * (0.45 + 0.01 * (k % 10))]]},
                               {"object": 2, "slice": 0, "box": [2, 2, size // 4, size // 3]}]}
        (folder / f"v{k:03d}.prompts.json").write_text(json.dumps(prompts))
        entries.append({"image": f"v{k:03d}.tif", "prompts": f"v{k:03d}.prompts.json"})
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"volumes": entries}))
    return manifest


def save_test_checkpoint(path: Path, image_size: int) -> Path:
    import torch

    from napari_sam2med.sam2 import build_model
    from napari_sam2med.sam2.checkpoint import save_checkpoint
    from napari_sam2med.sam2.configs import get_config

    torch.manual_seed(0)
    return save_checkpoint(build_model(get_config("sam2.1-test", image_size)), path)


def sequential(manifest: Path, out: Path, spec) -> dict:
    """The same per-volume function, in this process, one after another (no dask)."""
    from napari_sam2med.batch.manifest import load_jobs
    from napari_sam2med.batch.task import load_spec_model
    from napari_sam2med.engine.progress import run_to_end
    from napari_sam2med.engine.prompts import PromptSet
    from napari_sam2med.engine.volume import segment_to_file
    from napari_sam2med.io import FrameStack, read_array

    jobs = load_jobs(manifest, out)
    out.mkdir()
    t0 = time.perf_counter()
    model = load_spec_model(spec)
    t_model = time.perf_counter() - t0
    t1 = time.perf_counter()
    for job in jobs:
        stack = FrameStack(read_array(job.image))
        run_to_end(segment_to_file(model, stack, PromptSet.from_json(job.prompts, len(stack), stack.frame_shape),
                                   job.out))
    wall = time.perf_counter() - t1
    return {"workers": "in-process", "threads": spec.torch_threads, "volumes": len(jobs), "model_s": t_model,
            "wall_s": wall + t_model, "steady_vpm": 60 * len(jobs) / wall,
            "overall_vpm": 60 * len(jobs) / (wall + t_model), "task_s": wall / len(jobs)}


def on_cluster(manifest: Path, out: Path, spec, workers: int) -> dict:
    from distributed import Client, LocalCluster

    from napari_sam2med.batch.manifest import load_jobs
    from napari_sam2med.batch.runner import quiet_dask_logs, run_batch
    from napari_sam2med.batch.task import sidecar_path
    from napari_sam2med.engine.progress import run_to_end

    jobs = load_jobs(manifest, out)
    out.mkdir()
    quiet_dask_logs()
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    t_cluster = time.perf_counter() - t0
    try:
        done_at = []

        def note_done(step) -> None:
            # One timestamp per finished volume (a step may report several at once).
            if step.done > len(done_at):
                done_at.extend([time.perf_counter()] * (step.done - len(done_at)))

        summary = run_to_end(run_batch(jobs, spec, out, client=client), on_step=note_done)
        assert not summary.failures, summary.failures
        wall = time.perf_counter() - t0
        steady = done_at[-1] - done_at[0]
        task_s = statistics.median(json.loads(sidecar_path(j.out).read_text())["seconds"] for j in jobs)
        # An empty task's round trip on the same (warm) cluster.
        trips = []
        for _ in range(20):
            t = time.perf_counter()
            client.submit(int, 1, pure=False).result()
            trips.append(time.perf_counter() - t)
    finally:
        client.close()
        cluster.close()
    n = len(jobs)
    steady_vpm = 60 * (n - 1) / steady if steady > 0 else float("nan")
    return {"workers": workers, "volumes": n, "cluster_s": t_cluster, "first_done_s": done_at[0] - t0,
            "wall_s": wall, "steady_vpm": steady_vpm, "overall_vpm": 60 * n / wall, "task_s": task_s,
            "overhead_s": (steady * workers / (n - 1)) - task_s if n > 1 else float("nan"),
            "empty_task_ms": 1000 * statistics.median(trips)}


def to_markdown(rows: list[dict], args, machine: str) -> str:
    lines = [
        f"### {time.strftime('%Y-%m-%d')}: {args.volumes} volumes of {args.slices}×{args.size}×{args.size}, "
        f"`sam2.1-test` at {args.image_size} px, device {args.device}",
        "",
        f"Machine: {machine}.",
        "",
        "| run | cluster start s | first volume done s (incl. model load per worker) | total wall s | "
        "steady vol/min | overall vol/min | in-task s/vol (median) | dask overhead s/vol | "
        "empty task round trip ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["workers"] == "in-process":
            lines.append(f"| sequential in one process, no dask, {r['threads']} torch thread(s) | {r['model_s']:.1f} (model) | – | {r['wall_s']:.1f} | "
                         f"{r['steady_vpm']:.0f} | {r['overall_vpm']:.0f} | {r['task_s']:.2f} | – | – |")
        else:
            lines.append(f"| LocalCluster, {r['workers']} worker process(es) | {r['cluster_s']:.1f} | "
                         f"{r['first_done_s']:.1f} | {r['wall_s']:.1f} | {r['steady_vpm']:.0f} | "
                         f"{r['overall_vpm']:.0f} | {r['task_s']:.2f} | {r['overhead_s']:.3f} | "
                         f"{r['empty_task_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volumes", type=int, default=16)
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seq-threads", type=int, nargs="*", default=[1],
                   help="torch threads of the sequential no-dask baseline run(s)")
    p.add_argument("--machine", default=None, help="machine description for the table")
    p.add_argument("--md", default=None, help="append the table to this markdown file")
    args = p.parse_args(argv)

    from napari_sam2med.batch.task import make_spec

    machine = args.machine or f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        manifest = make_volumes(tmp / "in", args.volumes, args.slices, args.size)
        ckpt = save_test_checkpoint(tmp / "test.pt", args.image_size)
        cores = os.cpu_count() or 1
        for k, threads in enumerate(args.seq_threads):
            spec = make_spec("sam2.1-test", image_size=args.image_size, checkpoint=ckpt, device=args.device,
                             torch_threads=threads)
            rows.append(sequential(manifest, tmp / f"seq{k}", spec))
            print(rows[-1], flush=True)
        for w in args.workers:
            spec_w = make_spec("sam2.1-test", image_size=args.image_size, checkpoint=ckpt, device=args.device,
                               torch_threads=max(1, cores // w))
            rows.append(on_cluster(manifest, tmp / f"w{w}", spec_w, w))
            print(rows[-1], flush=True)
    table = to_markdown(rows, args, machine)
    print(table)
    if args.md:
        with open(args.md, "a", encoding="utf-8") as handle:
            handle.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
