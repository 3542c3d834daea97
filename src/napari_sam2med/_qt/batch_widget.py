"""Batch dock: segment a folder or manifest of volumes on a local dask cluster, open the results.

The work is :func:`napari_sam2med.batch.runner.run_batch` (the generator behind
``sam2med batch``), run by the shared :class:`~._worker.JobRunner`. Cancel is cooperative: the
job stops at its next progress poll and closes the batch generator *in the worker thread*, so
queued volumes are cancelled and the local cluster shuts down off the GUI thread; finished
volumes stay finished (a rerun skips them).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ._worker import JobEnd, JobRunner, Outcome, job_layout

__all__ = ["BatchWidget", "BatchSettings", "batch_job"]

DEV_ENV = "SAM2MED_DEV"
SIZES = ("default", "1024", "512", "256")


@dataclass(frozen=True)
class BatchSettings:
    """What the dock runs: a folder or manifest, an output folder, a model and a cluster size."""

    source: Path
    out_dir: Path
    model: str = "sam2.1-tiny"
    image_size: int | None = None
    checkpoint: Path | None = None
    workers: int = 1


def batch_job(settings: BatchSettings, stop: threading.Event) -> Generator[Any, None, Any]:
    """Validate, then run the batch; yields ``BatchProgress``; returns ``(jobs, summary or None)``.

    ``summary`` is None when ``stop`` was set (the batch generator is closed here, in the worker
    thread, which cancels queued volumes and closes the local cluster).
    """
    from ..batch.manifest import load_jobs
    from ..batch.runner import ClusterConfig, quiet_dask_logs, run_batch
    from ..batch.task import make_spec

    jobs = load_jobs(settings.source, settings.out_dir)
    threads = max(1, (os.cpu_count() or 1) // settings.workers)
    spec = make_spec(settings.model, image_size=settings.image_size, checkpoint=settings.checkpoint,
                     device="auto", offline=True, torch_threads=threads)
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

        self.source_edit = QLineEdit()
        self.source_edit.setPlaceholderText("folder or manifest .json/.csv")
        self.folder_btn = QPushButton("Folder...")
        self.manifest_btn = QPushButton("Manifest...")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder")
        self.out_btn = QPushButton("Output...")
        self.model_combo = QComboBox()
        names = list(MODEL_CONFIGS) if os.environ.get(DEV_ENV) == "1" else list(MODEL_NAMES)
        self.model_combo.addItems(names)
        self.size_combo = QComboBox()
        self.size_combo.setEditable(True)
        self.size_combo.addItems(SIZES)
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("default: the cached official weights")
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(1, max(1, os.cpu_count() or 1))
        self.workers_spin.setValue(max(1, (os.cpu_count() or 2) // 2))
        self.run_btn = QPushButton("Run batch")
        self.cancel_btn = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.results = QListWidget()
        self.open_btn = QPushButton("Open result")

        form = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.source_edit)
        row.addWidget(self.folder_btn)
        row.addWidget(self.manifest_btn)
        form.addRow("Volumes", row)
        row = QHBoxLayout()
        row.addWidget(self.out_edit)
        row.addWidget(self.out_btn)
        form.addRow("Output", row)
        form.addRow("Model", self.model_combo)
        form.addRow("Image size", self.size_combo)
        form.addRow("Checkpoint", self.checkpoint_edit)
        form.addRow("Workers", self.workers_spin)
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

    # -- running -----------------------------------------------------------------------
    def settings(self) -> BatchSettings:
        """The dock's settings; ``ValueError`` with a one-line message when incomplete."""
        source, out = self.source_edit.text().strip(), self.out_edit.text().strip()
        if not source:
            raise ValueError("choose a folder or a manifest first")
        if not out:
            raise ValueError("choose an output folder first")
        size_text = self.size_combo.currentText().strip()
        if size_text in ("", "default"):
            size = None
        elif size_text.isdigit():
            size = int(size_text)
        else:
            raise ValueError(f"image size must be a number, got {size_text!r}")
        ckpt = self.checkpoint_edit.text().strip()
        return BatchSettings(Path(source).expanduser(), Path(out).expanduser(), self.model_combo.currentText(),
                             size, Path(ckpt).expanduser() if ckpt else None, self.workers_spin.value())

    def is_busy(self) -> bool:
        return self.runner.busy

    def run(self) -> None:
        """Start the batch in the background (no-op while one runs)."""
        if self.runner.busy:
            return
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
