"""SAM2Flow dock widget: prompt vessels with points, estimate flow, show vectors and speeds.

The heavy work (:func:`napari_sam2med.flow.runner.estimate_flow`) runs in a napari
generator ``thread_worker`` that streams the video layer's data frame by frame;
layers are added on the main thread when the worker returns, all or none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..flow.command import METHODS, has_default_weights, make_estimator
from ..flow.layers import flow_layer_data
from ..flow.runner import estimate_flow
from ..flow.types import RoiPrompt
from ._worker import RunCancelMixin, relay_progress

__all__ = ["FlowWidget", "prompts_from_points", "SpeedPlot"]

PROMPTS_NAME = "SAM2Flow prompts"
POSITIVE_COLOR = "lime"
NEGATIVE_COLOR = "red"


def prompts_from_points(layer: Points) -> list[RoiPrompt]:
    """Group a prompt Points layer into ROI prompts using its ``roi_id``/``label`` features.

    The last two coordinates of each point are ``(row, col)`` in data space.
    """
    data = np.asarray(layer.data, dtype=float)
    if len(data) == 0:
        raise ValueError(f"add points to the '{layer.name}' layer first")
    features = layer.features
    if "roi_id" not in features or "label" not in features:
        raise ValueError(f"'{layer.name}' needs 'roi_id' and 'label' features")
    roi_ids = np.asarray(features["roi_id"], dtype=int)
    labels = np.asarray(features["label"], dtype=int)
    rois = []
    for roi_id in sorted(set(roi_ids.tolist())):
        sel = roi_ids == roi_id
        if not np.any(labels[sel] == 1):
            raise ValueError(f"ROI {roi_id} has no positive point")
        rois.append(RoiPrompt(int(roi_id), data[sel][:, -2:], labels[sel]))
    return rois


def _flow_job(video: Any, rois: list, method: str, weights: str | None, pixel_size, fps, scale):
    """Generator run in the worker thread; yields (done, total), returns layers + result."""
    estimator = make_estimator(method, weights)
    out: dict = {}
    result = yield from relay_progress(
        estimate_flow(video, rois, estimator, out=out, pixel_size=pixel_size, fps=fps)
    )
    layers = flow_layer_data(
        out["flow"], out["roi_ids"], pixel_size=pixel_size, fps=fps, scale=scale,
        name=f"SAM2Flow {method}",
    )
    return result, layers


class SpeedPlot(QWidget):
    """Matplotlib plot of mean speed over time, one line per ROI."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.5), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.axes = self.figure.add_subplot(111)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)

    def plot(self, speeds: np.ndarray, roi_ids: list[int], unit: str) -> None:
        """Draw ``speeds`` (T-1, n_rois) against the frame-pair index."""
        self.axes.clear()
        t = np.arange(speeds.shape[0])
        for k, roi_id in enumerate(roi_ids):
            self.axes.plot(t, speeds[:, k], marker=".", label=f"ROI {roi_id}")
        self.axes.set_xlabel("frame pair t -> t+1")
        self.axes.set_ylabel(f"mean speed ({unit})")
        if roi_ids:
            self.axes.legend(loc="best", fontsize="small")
        self.canvas.draw_idle()


class FlowWidget(RunCancelMixin, QWidget):
    """Dock widget running SAM2Flow (or a classical baseline) on a video layer.

    Cancel stops the worker after the frame pair in flight; no layer is added then.
    """

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.worker: Any = None
        self.last_result: Any = None
        self.plot: SpeedPlot | None = None
        self._plot_dock: Any = None

        self.video_combo = QComboBox()
        self.add_prompts_btn = QPushButton("Prompt layer")
        self.negative_check = QCheckBox("negative point")
        self.roi_spin = QSpinBox()
        self.roi_spin.setRange(1, 255)
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(METHODS))
        self.method_combo.setCurrentText("sam2flow" if has_default_weights() else "tvl1")
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("SAM2Flow checkpoint (blank: shipped weights)")
        self.pixel_spin = QDoubleSpinBox()
        self.fps_spin = QDoubleSpinBox()
        for spin, suffix in ((self.pixel_spin, " µm"), (self.fps_spin, " fps")):
            spin.setRange(0.0, 1e6)
            spin.setDecimals(4)
            spin.setSpecialValueText("not set")  # 0 = uncalibrated
            spin.setSuffix(suffix)
        self.run_btn = QPushButton("Run")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.progress = QProgressBar()

        form = QFormLayout()
        form.addRow("video", self.video_combo)
        prompt_row = QHBoxLayout()
        prompt_row.addWidget(self.add_prompts_btn)
        prompt_row.addWidget(self.negative_check)
        form.addRow("prompts", prompt_row)
        form.addRow("ROI id", self.roi_spin)
        form.addRow("method", self.method_combo)
        form.addRow("weights", self.weights_edit)
        form.addRow("pixel size", self.pixel_spin)
        form.addRow("frame rate", self.fps_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addStretch(1)

        self.add_prompts_btn.clicked.connect(self.prompts_layer)
        self.negative_check.toggled.connect(self._update_defaults)
        self.roi_spin.valueChanged.connect(self._update_defaults)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._refresh_videos)
        self._refresh_videos()

    # -- layers ---------------------------------------------------------------
    def _refresh_videos(self, event: Any = None) -> None:
        current = self.video_combo.currentText()
        names = [
            lyr.name
            for lyr in self.viewer.layers
            if isinstance(lyr, Image) and lyr.ndim == 3 and not lyr.rgb
        ]
        self.video_combo.blockSignals(True)
        self.video_combo.clear()
        self.video_combo.addItems(names)
        if current in names:
            self.video_combo.setCurrentText(current)
        self.video_combo.blockSignals(False)

    def video_layer(self) -> Image:
        """The selected (T, H, W) Image layer."""
        name = self.video_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("choose a (T, H, W) video Image layer")
        return self.viewer.layers[name]

    def prompts_layer(self) -> Points:
        """Return the prompt Points layer, creating it (2-D, over the video) if needed."""
        if PROMPTS_NAME in self.viewer.layers:
            return self.viewer.layers[PROMPTS_NAME]
        kwargs: dict[str, Any] = {}
        try:
            video = self.video_layer()
            kwargs = {"scale": video.scale[-2:], "translate": video.translate[-2:]}
        except ValueError:
            pass
        layer = self.viewer.add_points(
            np.zeros((0, 2)),
            name=PROMPTS_NAME,
            features={"roi_id": np.zeros(0, int), "label": np.zeros(0, int)},
            size=4,
            **kwargs,
        )
        layer.mode = "add"
        self._update_defaults(layer=layer)
        return layer

    def _update_defaults(self, *_: Any, layer: Points | None = None) -> None:
        if layer is None:
            if PROMPTS_NAME not in self.viewer.layers:
                return
            layer = self.viewer.layers[PROMPTS_NAME]
        negative = self.negative_check.isChecked()
        # current_face_color also recolours selected points: deselect (a new point is selected)
        layer.selected_data = set()
        layer.feature_defaults = {"roi_id": self.roi_spin.value(), "label": 0 if negative else 1}
        layer.current_face_color = NEGATIVE_COLOR if negative else POSITIVE_COLOR

    # -- running --------------------------------------------------------------
    def _settings(self) -> tuple:
        video_layer = self.video_layer()
        if PROMPTS_NAME not in self.viewer.layers:
            raise ValueError("add prompt points first (Prompt layer button)")
        rois = prompts_from_points(self.viewer.layers[PROMPTS_NAME])
        data = video_layer.data[0] if video_layer.multiscale else video_layer.data
        pixel, fps = self.pixel_spin.value(), self.fps_spin.value()
        pixel_size, frame_rate = (pixel, fps) if pixel > 0 and fps > 0 else (None, None)
        if (pixel > 0) != (fps > 0):
            raise ValueError("set both pixel size and frame rate for µm/s, or neither")
        method = self.method_combo.currentText()
        weights = self.weights_edit.text().strip() or None
        return data, rois, method, weights, pixel_size, frame_rate, tuple(video_layer.scale)

    def run(self) -> None:
        """Start the flow worker (no-op while one is running)."""
        if self.worker is not None:
            return
        try:
            args = self._settings()
        except (ValueError, FileNotFoundError) as exc:
            show_error(f"SAM2Flow: {exc}")
            return
        self._start_job(
            _flow_job, *args,
            on_returned=self._on_returned, on_error=self._on_error, on_aborted=self._on_aborted,
        )

    def _on_returned(self, value: tuple) -> None:
        result, layers = value
        added = []
        try:
            for data, meta, layer_type in layers:
                name = meta["name"]
                if name in self.viewer.layers:  # replace the previous run's output
                    self.viewer.layers.remove(name)
                added.append(getattr(self.viewer, f"add_{layer_type}")(data, **meta))
            self._show_plot(result)
        except Exception as exc:  # never leave half-added layers
            for layer in added:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            show_error(f"SAM2Flow: could not add the result layers: {exc}")
            return
        self.last_result = result
        show_info(f"SAM2Flow: {result.method} done on {result.mean_speed_px.shape[0]} frame pairs")

    def _show_plot(self, result: Any) -> None:
        if self.plot is None:
            self.plot = SpeedPlot()
            window = getattr(self.viewer, "window", None)
            if window is not None and hasattr(window, "add_dock_widget"):
                self._plot_dock = window.add_dock_widget(
                    self.plot, name="SAM2Flow speed", area="bottom"
                )
        calibrated = result.mean_speed_um_s is not None
        speeds = result.mean_speed_um_s if calibrated else result.mean_speed_px
        self.plot.plot(speeds, result.roi_ids, "µm/s" if calibrated else "px/frame")

    def _on_error(self, exc: Exception) -> None:
        show_error(f"SAM2Flow: {exc}")

    def _on_aborted(self) -> None:
        self.progress.setValue(0)
        show_info("SAM2Flow: cancelled")
