""""Adapt to this video" panel of the Flow dock: self-supervised fine-tuning of SAM2Flow.

Runs :func:`napari_sam2med.flow.adapt.adapt_flow` on the Flow dock's video and prompts in
the shared job runner (progress, live loss, Cancel, errors), saves the adapted weights with
the one atomic writer and puts their path into the dock's weights field, so the next Run
uses them. Cancel stops between steps and writes nothing.

The host is the Flow dock: it must provide ``_settings()`` (video data, ROI prompts,
method, weights, ...) and ``method_panel.weights_edit``; it adds this panel with
``FlowWidget.add_panel(FlowAdaptPanel(widget))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
)

from ._worker import JobEnd, JobRunner, Outcome, job_layout

__all__ = ["FlowAdaptPanel", "adapt_job", "default_output"]


def default_output() -> Path:
    """Where adapted weights go when no path is given (the user's cache folder)."""
    return Path.home() / ".cache" / "napari-sam2med" / "sam2flow_adapted.pt"


def adapt_job(video: Any, rois: list, weights: str | None, steps: int, out: Path):
    """Job generator: adapt the SAM2Flow weights to ``video``, yield progress, save, return the path."""
    from ..flow.adapt import AdaptConfig, adapt_flow
    from ..flow.estimators.sam2flow import load_flow_model, save_flow_weights

    model = load_flow_model(weights)
    result = yield from adapt_flow(video, rois, model, AdaptConfig(steps=steps))
    save_flow_weights(result.model, out, {"adapted_from": Path(weights).name if weights else "shipped",
                                          "steps": steps, "loss_first": result.losses[0],
                                          "loss_last": result.losses[-1]})
    return out, result.losses


class FlowAdaptPanel(QGroupBox):
    """Steps, output path, the "Adapt to this video" button, Cancel, progress and the live loss."""

    def __init__(self, host: Any, parent: Any = None) -> None:
        super().__init__("Adapt to this video (no labels)", parent)
        self.host = host
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 10000)
        self.steps_spin.setValue(100)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText(str(default_output()))
        self.adapt_btn = QPushButton("Adapt to this video")
        self.cancel_btn = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.loss_label = QLabel("")
        self.runner = JobRunner(self.progress, self.adapt_btn, self.cancel_btn, parent=self)
        self.last_end: JobEnd | None = None
        self.saved: Path | None = None

        form = QFormLayout()
        form.addRow("steps", self.steps_spin)
        form.addRow("save to", self.out_edit)
        job_layout(self, form, self.adapt_btn, self.cancel_btn, self.progress, self.loss_label)
        self.adapt_btn.clicked.connect(self.adapt)
        self.cancel_btn.clicked.connect(self.runner.cancel)

    def output_path(self) -> Path:
        """The chosen output file (default: :func:`default_output`); its folder is created."""
        text = self.out_edit.text().strip()
        out = Path(text).expanduser() if text else default_output()
        if out.suffix != ".pt":
            raise ValueError(f"adapted weights must be saved as a .pt file, got {out.name!r}")
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    def adapt(self) -> None:
        """Start adapting (no-op while a job runs)."""
        if self.runner.busy:
            return
        try:
            data, rois, method, weights, *_ = self.host._settings()
            if method != "sam2flow":
                raise ValueError("choose the sam2flow method to adapt its weights")
            out = self.output_path()
        except (ValueError, FileNotFoundError, OSError) as exc:
            show_error(f"SAM2Flow adapt: {exc}")
            return
        self.loss_label.setText("starting ...")
        self.runner.start(adapt_job, data, rois, weights, self.steps_spin.value(), out,
                          on_step=self._on_step, on_end=self._on_end)

    def _on_step(self, progress: Any) -> None:
        self.loss_label.setText(f"step {progress.step}/{progress.total}, loss {progress.loss:.4f}")

    def _on_end(self, end: JobEnd) -> None:
        self.last_end = end
        if end.outcome is Outcome.DONE:
            self.saved, losses = end.value
            self.host.method_panel.weights_edit.setText(str(self.saved))
            self.loss_label.setText(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}; saved {self.saved.name}")
            show_info(f"SAM2Flow: adapted weights saved to {self.saved} and selected")
        elif end.outcome is Outcome.CANCELLED:
            self.loss_label.setText(f"{end.reason}; nothing saved")
        else:
            self.loss_label.setText("failed")
            show_error(f"SAM2Flow adapt: {end.describe_error()}")
