"""``sam2med batch``: segment many volumes on dask.distributed.

Usage::

    sam2med batch MANIFEST|FOLDER --out OUT_DIR [--scheduler tcp://HOST:PORT | --workers N]
                  [--threads-per-worker T] [--memory-limit auto] [--retries 2] [--axis axial] [--direction both]
                  [--memory sam2|slm] [--window LO HI]
                  [--model sam2.1-tiny] [--checkpoint PATH | --random-init] [--image-size N]
                  [--device auto] [--offline] [--prompt-encoder NAME|PATH [--video-mode per-frame]] [--no-progress]

The manifest is validated completely first; every problem is printed (one line each) and the
command exits with 2 before any work. ``auto: true`` entries (no prompts) are segmented by an
AutoSAM2 prompt encoder (``--prompt-encoder``, checked against the SAM2 weights first) as
``sam2med auto`` does. Volumes whose output and sidecar already match are skipped, so a killed
batch resumes. Exit status 3 means some volumes failed
(listed in ``OUT_DIR/failures.csv``); the others were written.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from .._cli_utils import EXIT_BAD_INPUT, UserError, add_engine_args, add_model_args, bad_input

__all__ = ["add_parser", "run", "EXIT_SOME_FAILED"]

EXIT_SOME_FAILED = 3


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sam2med batch``."""
    p = subparsers.add_parser(
        "batch", help="segment many volumes on a dask cluster (local by default)",
        description="Segment every volume of a manifest (JSON/CSV) or folder on dask.distributed: a local "
                    "cluster of worker processes by default, or a running cluster with --scheduler.",
        epilog="Exit status: 0 every volume written or skipped (already done), 2 bad input (all problems "
               "listed, nothing run), 3 some volumes failed (OUT/failures.csv), 130 interrupted (rerun resumes).")
    p.add_argument("manifest", help="manifest .json/.csv (image, prompts|box|auto, out) or a folder of "
                                    "volumes with <name>.prompts.json files")
    p.add_argument("--out", required=True, help="output folder (manifest 'out' paths are relative to it)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, help="address of a running dask scheduler, tcp://HOST:PORT")
    where.add_argument("--workers", type=int, default=None,
                       help="local worker processes (default: one per GPU, else half the CPU cores)")
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="volumes one worker runs at once (default 1; memory grows with it)")
    p.add_argument("--memory-limit", default="auto",
                   help="per-worker memory limit of the local cluster, e.g. 8GB (default auto: RAM / workers); "
                        "dask pauses, then restarts a worker above it")
    p.add_argument("--retries", type=int, default=2, help="extra attempts for a failing volume (default 2)")
    p.add_argument("--axis", default="axial", choices=("axial", "coronal", "sagittal"),
                   help="slices to propagate through, as `propagate --axis` (prompts refer to these slices)")
    p.add_argument("--direction", default="both", choices=("forward", "backward", "both"))
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="contrast window for non-uint8 data (default: 0.5/99.5 percentiles per volume)")
    p.add_argument("--prompt-encoder", default=None, metavar="NAME|PATH",
                   help="AutoSAM2 prompt encoder for 'auto' entries (no prompts): a shipped name or a file from "
                        "`sam2med train --auto-prompt`; it must match the SAM2 weights (checked before any work)")
    p.add_argument("--video-mode", default="per-frame", choices=("per-frame", "first-frame-propagate"),
                   help="'auto' entries, as `sam2med auto`: per-frame (default) or first-frame-propagate")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_args(p)
    add_model_args(p)
    p.set_defaults(func=run)
    return p


def _raise_interrupt(signum, frame):  # SIGTERM behaves like Ctrl-C: queued work cancelled, cluster closed
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run ``sam2med batch``."""
    from tqdm import tqdm

    from ..engine.progress import run_to_end
    from .manifest import ManifestError, load_jobs
    from .runner import FAILURES_CSV, ClusterConfig, quiet_dask_logs, run_batch
    from .task import make_spec

    if args.prompt_encoder is not None:
        from ..auto.shipped import resolve_prompt_encoder

        with bad_input():
            resolve_prompt_encoder(args.prompt_encoder)  # a missing file fails now (its SAM2 check comes below)
    for name in ("workers", "threads_per_worker"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.retries < 0:
        raise UserError("--retries must be 0 or more")
    out_dir = Path(args.out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder")
    try:
        jobs = load_jobs(args.manifest, out_dir, axis=args.axis, prompt_encoder=args.prompt_encoder is not None)
    except ManifestError as err:
        for line in err.problems:
            print(f"sam2med batch: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    cluster = ClusterConfig(scheduler=args.scheduler, workers=args.workers,
                            threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit)
    threads = None
    if not args.scheduler:
        from .runner import default_workers

        workers = args.workers or default_workers(args.device)
        threads = max(1, (os.cpu_count() or 1) // (workers * args.threads_per_worker))
    with bad_input():  # unknown model, missing / wrong checkpoint
        spec = make_spec(args.model, image_size=args.image_size, checkpoint=args.checkpoint,
                         random_init=args.random_init, device=args.device, offline=args.offline or None,
                         torch_threads=threads, direction=args.direction, window=args.window,
                         axis=args.axis, memory=args.memory, progress=not args.no_progress,
                         prompt_encoder=args.prompt_encoder if any(j.auto for j in jobs) else None,
                         video_mode=args.video_mode)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not getattr(args, "verbose", False):
        importlib.import_module("distributed")  # configures its loggers on import; quieten them afterwards
        quiet_dask_logs()

    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        previous = None
    bar = tqdm(total=len(jobs), desc="batch", unit="vol", disable=args.no_progress, file=sys.stderr)
    try:
        linked: list[str] = []
        shown = [-1]  # volumes done at the last redraw

        def on_step(step) -> None:
            if not linked:  # the first step comes once the cluster is up
                linked.append(step.dashboard)
                if step.dashboard:
                    tqdm.write(f"dask dashboard: {step.dashboard}", file=sys.stderr)
                bar.initial = bar.n = step.skipped  # skipped volumes do not count in the rate / ETA
            if step.done != shown[0]:  # redraw on change only (polls come every 0.25 s)
                bar.set_postfix(failed=step.failed, skipped=step.skipped, refresh=False)
                bar.update(step.done - bar.n)
                shown[0] = step.done

        try:
            summary = run_to_end(run_batch(jobs, spec, out_dir, cluster=cluster, retries=args.retries), on_step)
        except ConnectionError as err:
            if linked:  # lost mid-run: not an input problem
                raise
            raise UserError(str(err)) from None  # --scheduler unreachable
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"{summary.written} written, {summary.skipped} skipped (already done), {len(summary.failures)} failed "
          f"of {summary.total} volumes in {summary.seconds:.1f} s -> {out_dir}")
    if summary.failures:
        for f in summary.failures:
            print(f"sam2med batch: failed: {f.image}: {f.error}", file=sys.stderr)
        print(f"sam2med batch: {len(summary.failures)} volume(s) failed, see {out_dir / FAILURES_CSV}",
              file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0
