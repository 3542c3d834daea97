"""Batch dock: segment a folder or manifest of volumes on a local dask cluster, open the results.

The work is :func:`napari_sam2med.batch.runner.run_batch` (the generator behind
``sam2med batch``), run by the shared :class:`~._worker.JobRunner`. Cancel is cooperative: the
job stops at its next progress poll and closes the batch generator *in the worker thread*, so
queued volumes are cancelled and the local cluster shuts down off the GUI thread; finished
volumes stay finished (a rerun skips them).

Manifest entries with ``auto: true`` (no prompts) take the dock's *Prompt encoder* (none, a
shipped one, or a file) and *Video mode*, exactly as ``sam2med batch --prompt-encoder
--video-mode``: the same ``load_jobs`` / ``make_spec`` / ``run_batch`` calls, so an encoder trained
against other SAM2 weights is refused with the loader's one-line message before any work.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator

import numpy as np
from qtpy.QtWidgets import QFileDialog, QListWidget, QPushButton, QWidget

from . import form_rows as rows
from ._worker import JobEnd, JobRunner, Outcome, job_layout

__all__ = ["BatchWidget", "BatchSettings", "batch_job"]

DEV_ENV = "SAM2MED_DEV"
SIZES = ("default", "1024", "512", "256")


@dataclass(frozen=True)
class BatchSettings:
    """What the dock runs: a folder or manifest, an output folder, a model and a cluster size.

    ``prompt_encoder`` (a shipped name or a file; None: none) and ``video_mode`` serve the
    manifest's ``auto: true`` entries, as ``sam2med batch --prompt-encoder ... --video-mode ...``.
    """

    source: Path
    out_dir: Path
    model: str = "sam2.1-tiny"
    image_size: int | None = None
    checkpoint: Path | None = None
    workers: int = 1
    prompt_encoder: str | None = None
    video_mode: str = "per-frame"


def batch_job(settings: BatchSettings, stop: threading.Event) -> Generator[Any, None, Any]:
    """Validate, then run the batch; yields ``BatchProgress``; returns ``(jobs, summary or None)``.

    ``summary`` is None when ``stop`` was set (the batch generator is closed here, in the worker
    thread, which cancels queued volumes and closes the local cluster). As ``sam2med batch``: a
    prompt encoder trained against other SAM2 weights is refused (``make_spec``) before any work.
    """
    from ..batch.manifest import load_jobs
    from ..batch.runner import ClusterConfig, quiet_dask_logs, run_batch
    from ..batch.task import make_spec

    encoder = settings.prompt_encoder
    jobs = load_jobs(settings.source, settings.out_dir, prompt_encoder=encoder is not None)
    threads = max(1, (os.cpu_count() or 1) // settings.workers)
    spec = make_spec(settings.model, image_size=settings.image_size, checkpoint=settings.checkpoint,
                     device="auto", offline=True, torch_threads=threads,
                     prompt_encoder=encoder if any(job.auto for job in jobs) else None,
                     video_mode=settings.video_mode)
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    quiet_dask_logs()
    gen = run_batch(jobs, spec, settings.out_dir, cluster=ClusterConfig(workers=settings.workers))
    try:
        while True:
            try:
                step = next(gen)
            except StopIteration as done:
                return jobs, done.value
            if stop.is_set():
                return jobs, None
            yield step
    finally:
        gen.close()


class BatchWidget(QWidget):
    """Pick a folder (volumes + ``<name>.prompts.json``) or a manifest, run, open results as layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ..sam2.configs import MODEL_CONFIGS, MODEL_NAMES

        self.viewer = napari_viewer
        self.jobs: list = []
        self._stop = threading.Event()

        self.source_edit = rows.line_edit("folder or manifest .json/.csv")
        self.folder_btn = QPushButton("Folder...")
        self.manifest_btn = QPushButton("Manifest...")
        self.out_edit = rows.line_edit("output folder")
        self.out_btn = QPushButton("Output...")
        names = list(MODEL_CONFIGS) if os.environ.get(DEV_ENV) == "1" else list(MODEL_NAMES)
        self.model_combo = rows.combo(names)
        self.size_combo = rows.combo(SIZES, editable=True)
        self.checkpoint_edit = rows.line_edit("default: the cached official weights")
        self.workers_spin = rows.spin_box(1, max(1, os.cpu_count() or 1), max(1, (os.cpu_count() or 2) // 2))
        self.encoder_combo = rows.PromptEncoderCombo(rows.shipped_encoders(), allow_none=True)
        self.encoder_combo.setToolTip("AutoSAM2 prompt encoder for the manifest's 'auto: true' entries (no "
                                      "prompts): shipped ones, or a file from `sam2med train --auto-prompt`; "
                                      "it must match the SAM2 weights (checked before any work)")
        self.mode_combo = rows.video_mode_combo()
        self.mode_combo.setToolTip("'auto' entries: per-frame (every slice on its own) or first-frame-propagate "
                                   "(the first slice is auto-segmented, SAM2's memory propagates it)")
        self.run_btn, self.cancel_btn, self.progress, self.status = rows.job_controls("Run batch")
        self.results = QListWidget()
        self.open_btn = QPushButton("Open result")

        form = rows.form([
            ("Volumes", rows.path_row(self.source_edit, self.folder_btn, self.manifest_btn)),
            ("Output", rows.path_row(self.out_edit, self.out_btn)),
            ("Model", self.model_combo), ("Image size", self.size_combo), ("Checkpoint", self.checkpoint_edit),
            ("Workers", self.workers_spin), ("Prompt encoder", self.encoder_combo), ("Video mode", self.mode_combo),
        ])
        job_layout(self, form, self.run_btn, self.cancel_btn, self.progress, self.status, self.results,
                   self.open_btn)

        self.runner = JobRunner(self.progress, self.run_btn, self.cancel_btn, parent=self)
        self.folder_btn.clicked.connect(self._pick_folder)
        self.manifest_btn.clicked.connect(self._pick_manifest)
        self.out_btn.clicked.connect(self._pick_out)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.open_btn.clicked.connect(lambda: self.open_result())
        self.results.itemDoubleClicked.connect(lambda _item: self.open_result())
        self.encoder_combo.currentIndexChanged.connect(self._on_encoder)
        self._on_encoder()

    # -- pickers -----------------------------------------------------------------------
    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of volumes with <name>.prompts.json")
        if path:
            self.source_edit.setText(path)
            if not self.out_edit.text():
                self.out_edit.setText(str(Path(path) / "sam2med_batch"))

    def _pick_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Batch manifest", "", "Manifest (*.json *.csv)")
        if path:
            self.source_edit.setText(path)
            if not self.out_edit.text():
                self.out_edit.setText(str(Path(path).parent / "sam2med_batch"))

    def _pick_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder")
        if path:
            self.out_edit.setText(path)

    def _on_encoder(self, *_: Any) -> None:
        self.mode_combo.setEnabled(self.encoder_combo.encoder() != ("none", ""))

    # -- running -----------------------------------------------------------------------
    def settings(self) -> BatchSettings:
        """The dock's settings; ``ValueError`` with a one-line message when incomplete."""
        source, out = self.source_edit.text().strip(), self.out_edit.text().strip()
        if not source:
            raise ValueError("choose a folder or a manifest first")
        if not out:
            raise ValueError("choose an output folder first")
        size = rows.image_size(self.size_combo)
        encoder = self.encoder_combo.encoder()
        if encoder is None:
            raise ValueError(f"choose a prompt-encoder file ({rows.OPEN_FILE}) or none")
        ckpt = self.checkpoint_edit.text().strip()
        return BatchSettings(Path(source).expanduser(), Path(out).expanduser(), self.model_combo.currentText(),
                             size, Path(ckpt).expanduser() if ckpt else None, self.workers_spin.value(),
                             encoder[1] if encoder[0] != "none" else None, self.mode_combo.currentData())

    def is_busy(self) -> bool:
        return self.runner.busy

    def run(self) -> None:
        """Start the batch in the background (no-op while one runs)."""
        if self.runner.busy:
            return
        if self.encoder_combo.encoder() is None:  # "Open file…" without a file yet: ask now
            self.encoder_combo.browse()
        try:
            settings = self.settings()
        except ValueError as err:
            self.status.setText(f"Error: {err}")
            return
        self._stop = threading.Event()
        self.status.setText("Starting a local cluster and loading the model on each worker...")
        self.runner.start(batch_job, settings, self._stop, on_step=self._on_step, on_end=self._on_end)

    def cancel(self) -> None:
        """Stop after the current poll: queued volumes are dropped, finished ones kept."""
        if self.runner.busy:
            self._stop.set()
            self.status.setText("Cancelling...")

    def _on_step(self, step: Any) -> None:
        link = f" - dashboard {step.dashboard}" if step.dashboard else ""
        self.status.setText(f"{step.done}/{step.total} volumes ({step.written} written, {step.skipped} skipped, "
                            f"{step.failed} failed){link}")

    def _on_end(self, end: JobEnd) -> None:
        if end.outcome is Outcome.FAILED:
            self.status.setText(f"Error: {end.describe_error().splitlines()[0]}")
            return
        if end.outcome is Outcome.CANCELLED or end.value is None or end.value[1] is None:
            self.status.setText("Cancelled; finished volumes are kept (a rerun skips them).")
            jobs = end.value[0] if end.value else self.jobs
        else:
            jobs, summary = end.value
            failed = f"; {len(summary.failures)} failed (see failures.csv)" if summary.failures else ""
            self.status.setText(f"Done: {summary.written} written, {summary.skipped} skipped{failed}.")
        self._list_results(jobs)

    def _list_results(self, jobs: list) -> None:
        from ..batch.task import sidecar_path

        self.jobs = [job for job in jobs if job.out.exists() and sidecar_path(job.out).is_file()]
        self.results.clear()
        self.results.addItems([f"{job.image.name} -> {job.out.name}" for job in self.jobs])
        if self.jobs:
            self.results.setCurrentRow(0)

    def open_result(self, row: int | None = None) -> list:
        """Open a finished volume and its labels as layers (the selected row by default)."""
        from .._reader import overlay_kwargs
        from ..io import read_array, stack_name

        row = self.results.currentRow() if row is None else row
        if not 0 <= row < len(self.jobs):
            self.status.setText("Error: no finished result selected")
            return []
        job = self.jobs[row]
        image = self.viewer.open(str(job.image), plugin="napari-sam2med")[0]
        labels = self.viewer.add_labels(np.asarray(read_array(job.out)), name=f"{stack_name(job.out)}",
                                        **overlay_kwargs(image))
        return [image, labels]
