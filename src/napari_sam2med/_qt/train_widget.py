"""The "Fine-tune" dock: train SAM2 on the viewer's Image + Labels pair and/or data folders.

The run is :func:`napari_sam2med.train.trainer.train` (a generator) in the shared
:class:`~._worker.JobRunner`: progress bar, a live loss / validation-Dice line, Cancel and
one-line errors. Cancel stops after the step in flight and closes the training generator *in
the worker thread*, which saves ``state.pt``: a second Run on the same run folder resumes.
When a run ends, its best checkpoint (``best.pt``, else ``last.pt``) is offered to every
model panel of the viewer (:meth:`~.viewer_context.ModelManager.offer_checkpoint`).

Layer data are copied on the main thread when Run is pressed; the worker never touches layers.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator

import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox, QLabel, QWidget

from . import form_rows as rows
from ._worker import JobEnd, JobRunner, Outcome, job_layout
from .train_plot import TrainPlot
from .viewer_context import context_for, unwrap_viewer

__all__ = ["TrainWidget", "TrainStep", "train_job", "NO_LAYER"]

NO_LAYER = "(none)"
DEFAULT_MODEL = "sam2med-small-ct"
IMAGE_SIZES = ("model default", "1024", "512", "256", "128", "64")


@dataclass
class TrainStep:
    """One training step as the job runner sees it (``done``/``total``) plus the trainer's progress."""

    done: int
    total: int
    progress: Any


def default_run_folder() -> Path:
    """Where runs go when no folder is given."""
    return Path.home() / ".cache" / "napari-sam2med" / "runs" / "finetune"


def train_job(cfg: Any, layer_volumes: list, stop: threading.Event) -> Generator[TrainStep, None, Any]:
    """Open the data, train; yields :class:`TrainStep`; returns the ``TrainResult`` or None if stopped.

    ``cfg.data`` entries (folders, files, ``synthetic:...``) are opened here, in the worker thread,
    and added to ``layer_volumes``. When ``stop`` is set the training generator is closed here,
    which saves its resumable state.
    """
    from ..train.data import discover
    from ..train.trainer import train

    volumes = list(layer_volumes) + (discover(cfg.data) if cfg.data else [])
    if not volumes:
        raise ValueError("choose an Image + Labels layer pair or a data folder")
    # a clip cannot be longer than the shortest volume
    frames = max(1, min([cfg.frames] + [int(v.num_slices) for v in volumes]))
    gen = train(dataclasses.replace(cfg, frames=frames), volumes)
    try:
        while True:
            if stop.is_set():
                return None
            try:
                progress = next(gen)
            except StopIteration as finished:
                return finished.value
            yield TrainStep(progress.step, progress.total, progress)
    finally:
        gen.close()  # a cancelled run saves state.pt (the trainer's GeneratorExit handler)


class TrainWidget(QWidget):
    """Fine-tune a model on labelled volumes; the result is offered to the model panels.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ..sam2.configs import MODEL_CONFIGS
        from ..train.presets import Preset

        self.viewer = napari_viewer
        self._stop = threading.Event()
        self._model_name = DEFAULT_MODEL
        self.last_end: JobEnd | None = None
        self.result: Any = None
        self.checkpoint: Path | None = None
        self._val: float | None = None  # the latest validation Dice of the run in flight

        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.data_edit = rows.line_edit("optional: folders/files, ';'-separated (e.g. synthetic:4)")
        self.preset_combo = rows.combo([p.value for p in Preset if p is not Preset.CUSTOM], Preset.DECODER.value)
        self.steps_spin = rows.spin_box(1, 1_000_000, 200)
        self.size_combo = rows.combo(IMAGE_SIZES, "256")
        self.model_combo = rows.combo(MODEL_CONFIGS, DEFAULT_MODEL)
        self.start_edit = rows.line_edit("starting weights: the model's cached file")
        self.random_init = QCheckBox("Start from random weights (testing)")
        self.out_edit = rows.line_edit(str(default_run_folder()))
        self.run_btn, self.cancel_btn, self.progress, self.status = rows.job_controls(
            "Run", "Choose an Image + Labels pair or a data folder, then Run.")
        self.loss_label = QLabel("")
        self.plot = TrainPlot()
        self.runner = JobRunner(self.progress, self.run_btn, self.cancel_btn, parent=self)

        form = rows.form([
            ("Image", self.image_combo), ("Labels", self.labels_combo), ("Data", self.data_edit),
            ("Preset", self.preset_combo), ("Steps", self.steps_spin), ("Image size", self.size_combo),
            ("Model", self.model_combo), ("Start from", self.start_edit), ("", self.random_init),
            ("Run folder", self.out_edit),
        ])
        job_layout(self, form, self.run_btn, self.cancel_btn, self.progress, self.loss_label, self.plot,
                   self.status).addStretch(1)

        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self.refresh_layers)
        self.refresh_layers()

    # -- layers ------------------------------------------------------------------
    def refresh_layers(self, *_: Any) -> None:
        """List the viewer's 3D Image and Labels layers in the combos (keeping the choice)."""
        from napari.layers import Image, Labels

        try:
            for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
                current = combo.currentText()
                names = [lay.name for lay in self.viewer.layers
                         if isinstance(lay, kind) and lay.ndim == 3 and not getattr(lay, "rgb", False)]
                combo.clear()
                combo.addItems([NO_LAYER] + names)
                combo.setCurrentText(current if current in names else (names[0] if names else NO_LAYER))
        except RuntimeError:  # the dock's Qt objects are gone (viewer closing)
            pass

    def layer_volumes(self) -> list:
        """The chosen layer pair as a training volume (copied now, on the main thread), or []."""
        from ..train.data import LabeledVolume

        image_name, labels_name = self.image_combo.currentText(), self.labels_combo.currentText()
        if image_name == NO_LAYER and labels_name == NO_LAYER:
            return []
        if NO_LAYER in (image_name, labels_name):
            raise ValueError("choose both an Image and a Labels layer (or neither, with a data folder)")
        image, labels = self.viewer.layers[image_name], self.viewer.layers[labels_name]
        if tuple(image.data.shape) != tuple(labels.data.shape):
            raise ValueError(f"image {image_name!r} {tuple(image.data.shape)} and labels {labels_name!r} "
                             f"{tuple(labels.data.shape)} differ in shape")
        lab = np.asarray(labels.data).astype(np.int32)
        if not lab.any():
            raise ValueError(f"labels {labels_name!r} are empty: paint some objects first")
        # split="train": the user's own annotations always train; folders give the validation volume
        return [LabeledVolume(name=f"layer:{image_name}", image=np.array(image.data), labels=lab,
                              split="train", source=f"napari layers {image_name!r} + {labels_name!r}")]

    # -- settings ----------------------------------------------------------------
    def config(self) -> Any:
        """The :class:`~napari_sam2med.train.config.TrainConfig` the fields describe (raises ValueError)."""
        from ..train.config import TrainConfig

        out = self.out_edit.text().strip()
        out_dir = Path(out).expanduser() if out else default_run_folder()
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"run folder {out_dir} is a file")
        data = [part.strip() for part in self.data_edit.text().split(";") if part.strip()]
        start = self.start_edit.text().strip()
        if start and not Path(start).expanduser().is_file():
            raise ValueError(f"starting weights not found: {start}")
        steps = self.steps_spin.value()
        return TrainConfig(data=data, out=str(out_dir), val=1, model=self.model_combo.currentText(),
                           checkpoint=str(Path(start).expanduser()) if start else None,
                           random_init=self.random_init.isChecked(),
                           image_size=rows.image_size(self.size_combo),
                           preset=self.preset_combo.currentText(), steps=steps,
                           warmup=min(50, max(steps // 10, 1)), val_every=max(steps // 5, 1),
                           log_every=max(min(10, steps // 20), 1))

    # -- actions -----------------------------------------------------------------
    def is_busy(self) -> bool:
        return self.runner.busy

    def run(self) -> None:
        """Start (or resume, when the run folder holds ``state.pt``) a run in the background."""
        if self.runner.busy:
            return
        try:
            cfg = self.config()
            volumes = self.layer_volumes()
            if not volumes and not cfg.data:
                raise ValueError("choose an Image + Labels layer pair or a data folder")
        except (ValueError, KeyError, OSError) as err:
            self.status.setText(f"Error: {str(err).splitlines()[0]}")
            return
        self._stop = threading.Event()
        self._model_name = cfg.model
        self.result, self.checkpoint = None, None
        resuming = (Path(cfg.out) / "state.pt").is_file()
        self.loss_label.setText("")
        self.plot.clear()
        self.status.setText(f"{'Resuming' if resuming else 'Starting'} {cfg.preset.value} fine-tuning of "
                            f"{cfg.model} in {cfg.out} ...")
        self.runner.start(train_job, cfg, volumes, self._stop, on_step=self._on_step, on_end=self._on_end)

    def cancel(self) -> None:
        """Stop after the step in flight; the run folder stays resumable."""
        if self.runner.busy:
            self._stop.set()
            self.status.setText("Cancelling (saving a resumable state) ...")

    def _on_step(self, step: TrainStep) -> None:
        p = step.progress
        text = f"step {p.step}/{p.total}  loss {p.loss:.4f}  lr {p.lr:.2e}"
        if p.val_dice is not None:
            self._val = p.val_dice
        if self._val is not None:
            text += f"  val Dice {self._val:.3f}"
        self.loss_label.setText(text)
        self.plot.add(p.step, p.loss, p.val_dice)

    def _on_end(self, end: JobEnd) -> None:
        if end.outcome is Outcome.DONE and end.value is None and self._stop.is_set():
            end = dataclasses.replace(end, outcome=Outcome.CANCELLED, reason="cancelled by the user")
        self.last_end = end
        self._val = None
        if end.outcome is Outcome.FAILED:
            self.status.setText(f"Error: {end.describe_error().splitlines()[0]}")
            return
        if end.outcome is Outcome.CANCELLED:
            self.status.setText(f"{end.reason}: Run again with the same run folder to resume")
            return
        result = end.value
        result.model = None  # the GUI keeps the file, not a second copy of the weights
        self.result = result
        self.checkpoint = Path(result.best_path or result.last_path)
        dice = "" if result.best_dice is None else f", best validation Dice {result.best_dice:.3f}"
        context_for(unwrap_viewer(self.viewer)).models.offer_checkpoint(self._model_name, self.checkpoint)
        self.status.setText(f"Done: {result.step} steps{dice}. {self.checkpoint} is offered in the model panel.")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        self.cancel()
        for emitter in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            emitter.disconnect(self.refresh_layers)
        super().closeEvent(event)
