"""Run many volumes on dask.distributed: a local cluster of processes, or the user's cluster.

:func:`run_batch` is a generator (yields :class:`BatchProgress`, returns :class:`BatchSummary`),
so the CLI drives it with a progress bar and the napari dock in the shared job runner. Closing
the generator (Cancel, Ctrl-C) cancels what is still queued and shuts a local cluster down;
finished volumes stay finished.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator

from ..io.writers import atomic_write
from .manifest import VolumeJob
from .task import ModelPlugin, ModelSpec, is_finished, segment_job

__all__ = ["ClusterConfig", "BatchProgress", "Failure", "BatchSummary", "run_batch", "default_workers",
           "quiet_dask_logs", "write_failures", "FAILURES_CSV"]

FAILURES_CSV = "failures.csv"
_POLL_S = 0.25  # how often progress is yielded while volumes run (Cancel reacts within this)


@dataclass(frozen=True)
class ClusterConfig:
    """Where tasks run.

    Attributes
    ----------
    scheduler : str or None
        Address of a running scheduler (``tcp://host:8786``); None starts a ``LocalCluster``.
    workers : int or None
        Local worker processes (None: one per GPU, else :func:`default_workers`).
    threads_per_worker : int
        Dask threads per worker (volumes a worker runs at once; keep 1 to bound memory).
    memory_limit : str
        Per-worker memory limit of a local cluster (dask pauses, then restarts a worker above it).
    """

    scheduler: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"


@dataclass
class BatchProgress:
    """Volumes done (written + skipped + failed) out of ``total``."""

    done: int
    total: int
    written: int = 0
    skipped: int = 0
    failed: int = 0
    dashboard: str | None = None


@dataclass(frozen=True)
class Failure:
    """A volume that failed after its retries."""

    image: str
    out: str
    error: str


@dataclass
class BatchSummary:
    """What a run did."""

    total: int
    written: int
    skipped: int
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    dashboard: str | None = None


def default_workers(device: str = "auto") -> int:
    """One worker per GPU when GPUs will be used, else half the CPU cores (at least 1)."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    if device.startswith("cuda:"):
        return 1
    return max(1, (os.cpu_count() or 2) // 2)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:500]


def write_failures(out_dir: Path, failures: list[Failure]) -> Path:
    """Write ``failures.csv`` (image, out, error) atomically; a header only when none failed."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "out", "error"])
    for f in failures:
        writer.writerow([f.image, f.out, f.error])
    text = buf.getvalue()
    return atomic_write(out_dir / FAILURES_CSV, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _wait_some(pending: set) -> set:
    """The futures of ``pending`` that are done after at most ``_POLL_S`` seconds."""
    from concurrent.futures import CancelledError

    from distributed import wait

    try:
        wait(pending, timeout=_POLL_S, return_when="FIRST_COMPLETED")
    except (TimeoutError, CancelledError):  # nothing finished yet, or some were cancelled: see below
        pass
    return {f for f in pending if f.done()}


def quiet_dask_logs(level: int = logging.WARNING) -> None:
    """Keep dask's per-worker INFO lines out of the progress output (``-v`` keeps them)."""
    for name in ("distributed", "bokeh", "tornado"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), level))
    # At shutdown a busy worker is killed after 4 s ("still alive ... killing"): its work is done by then.
    logging.getLogger("distributed.nanny").setLevel(max(level, logging.ERROR))


def _start_client(cluster_cfg: ClusterConfig, spec: ModelSpec):
    from distributed import Client, LocalCluster

    if cluster_cfg.scheduler:
        try:
            return Client(cluster_cfg.scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as err:
            raise ConnectionError(f"cannot reach the dask scheduler {cluster_cfg.scheduler}: {err}") from None
    workers = cluster_cfg.workers or default_workers(spec.device)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=cluster_cfg.threads_per_worker,
                           processes=True, dashboard_address=":0", memory_limit=cluster_cfg.memory_limit,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run_batch(jobs: list[VolumeJob], spec: ModelSpec, out_dir: str | Path, *,
              cluster: ClusterConfig = ClusterConfig(), retries: int = 2,
              client=None) -> Generator[BatchProgress, None, BatchSummary]:
    """Segment every job on dask.distributed, skipping finished ones; write ``failures.csv``.

    Parameters
    ----------
    jobs : list of VolumeJob
        Validated jobs (see :func:`~napari_sam2med.batch.manifest.load_jobs`).
    spec : ModelSpec
        The model every worker loads once.
    out_dir : path
        Output folder (``failures.csv`` goes here).
    cluster : ClusterConfig
        Local cluster size, or the address of a running scheduler.
    retries : int
        Extra attempts for a failing volume before it counts as failed.
    client : distributed.Client, optional
        Use this client (its cluster is left running); otherwise one is made from ``cluster``.

    Yields
    ------
    BatchProgress
        First once the cluster is up (with the dashboard link), then every poll.

    Returns
    -------
    BatchSummary
    """
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    todo = [job for job in jobs if not is_finished(job, spec)]
    skipped = len(jobs) - len(todo)
    failures: list[Failure] = []
    written = 0
    own = client is None and bool(todo)  # nothing to do: no cluster at all
    local = None
    futures: dict = {}
    if own:
        client, local = _start_client(cluster, spec)
    try:
        dashboard = client.dashboard_link if client is not None else None
        yield BatchProgress(skipped, len(jobs), 0, skipped, 0, dashboard)
        if todo:
            client.register_plugin(ModelPlugin(spec), name=ModelPlugin.name)
            run_id = uuid.uuid4().hex[:8]
            for job in todo:
                fut = client.submit(segment_job, job, spec, retries=retries, pure=False,
                                    key=f"sam2med-{run_id}-{job.index:06d}")
                futures[fut] = job
        pending = set(futures)
        while pending:
            finished = _wait_some(pending)
            pending -= finished
            for fut in finished:
                job = futures[fut]
                if fut.status == "finished":
                    written += 1
                else:
                    error = "cancelled (lost worker or scheduler)" if fut.cancelled() else _one_line(fut.exception())
                    failures.append(Failure(str(job.image), str(job.out), error))
                fut.release()
            done = skipped + written + len(failures)
            yield BatchProgress(done, len(jobs), written, skipped, len(failures), dashboard)
        return BatchSummary(len(jobs), written, skipped, failures, time.perf_counter() - t0, dashboard)
    finally:
        pending_now = [f for f in futures if not f.done()]  # closed early (Cancel, Ctrl-C)
        if pending_now:
            client.cancel(pending_now)
        write_failures(out_dir, failures)
        if own:
            client.close()
            if local is not None:
                local.close()
