"""SAM2Flow dock widget: prompt vessels with points, estimate flow, show vectors and speeds.

The heavy work (:func:`napari_sam2med.flow.runner.estimate_flow`) runs in the
shared job runner, streaming the video layer's data frame by frame; layers are
added on the main thread when the job returns, all or none. The job is bound
to its video layer: deleting that layer stops it. Closing the dock cancels the
job and disconnects the dock from the viewer.

The dock is built from sub-widgets (:mod:`.flow_panels`, :mod:`.flow_plot`);
:meth:`FlowWidget.add_panel` hosts extra panels (e.g. adapting the model to a video).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QScrollArea, QVBoxLayout, QWidget

from ..flow.command import has_default_weights, make_estimator
from ..flow.layers import flow_layer_data
from ..flow.runner import estimate_flow
from ..flow.types import RoiPrompt
from ._worker import JobEnd, JobRunner, Outcome
from .connections import Connections, DockLifecycle
from .flow_adapt_panel import FlowAdaptPanel
from .flow_panels import FlowMethod, MethodPanel, VideoPanel
from .flow_plot import SpeedPlot
from .prompt_layers import NEGATIVE_COLOR, POSITIVE_COLOR, point_size
from .viewer_context import unwrap_viewer

__all__ = ["FlowWidget", "prompts_from_points", "SpeedPlot"]

PROMPTS_NAME = "SAM2Flow prompts"


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


def _flow_job(video: Any, rois: list, method: str, weights: str | None, pixel_size, fps, scale, span: int = 1):
    """Job generator: yields the runner's progress, returns the result and its layers."""
    estimator = make_estimator(method, weights, span=span)
    out: dict = {}
    result = yield from estimate_flow(video, rois, estimator, out=out, pixel_size=pixel_size, fps=fps)
    layers = flow_layer_data(
        out["flow"], out["roi_ids"], pixel_size=pixel_size, fps=fps, scale=scale,
        name=f"SAM2Flow {method}",
    )
    return result, layers


class FlowWidget(DockLifecycle, QWidget):
    """Dock widget running SAM2Flow (or a classical baseline) on a video layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it by this name).

    Cancel stops the job after the frame pair in flight; no layer is added then.
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.connections = Connections()
        self.last_result: Any = None
        self.last_end: JobEnd | None = None
        self.plot: SpeedPlot | None = None
        self._plot_dock: Any = None
        self._job_video: Any = None
        self._closed = self._docked = False

        self.video_panel = VideoPanel()
        self.method_panel = MethodPanel(FlowMethod("sam2flow" if has_default_weights() else "tvl1"))
        self.run_btn = QPushButton("Run")
        self.cancel_btn = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.runner = JobRunner(self.progress, self.run_btn, self.cancel_btn, parent=self)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        inner = QWidget()
        self._column = QVBoxLayout(inner)
        self._column.addWidget(self.video_panel)
        self._column.addWidget(self.method_panel)
        self._column.addLayout(buttons)
        self._column.addWidget(self.progress)
        self._column.addStretch(1)
        self.adapt_panel = FlowAdaptPanel(self)
        self.add_panel(self.adapt_panel)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

        v = self.video_panel
        v.add_prompts_btn.clicked.connect(self.prompts_layer)
        v.negative_check.toggled.connect(self._update_defaults)
        v.roi_spin.valueChanged.connect(self._update_defaults)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        layers = self.viewer.layers
        self.connections.connect(self.viewer, layers.events.inserted, self._refresh_videos)
        self.connections.connect(self.viewer, layers.events.removed, self._on_removed)
        self._refresh_videos()

    def add_panel(self, panel: QWidget) -> None:
        """Add an extra panel above the Run button (e.g. "Adapt to this video")."""
        self._column.insertWidget(self._column.count() - 3, panel)

    @property
    def worker(self) -> Any:
        """The running worker, or None."""
        return self.runner.worker

    # -- layers ---------------------------------------------------------------
    def _refresh_videos(self, event: Any = None) -> None:
        self.video_panel.set_videos([
            lyr.name for lyr in self.viewer.layers if isinstance(lyr, Image) and lyr.ndim == 3 and not lyr.rgb
        ])

    def _on_removed(self, event: Any) -> None:
        if self._job_video is not None and event.value is self._job_video:
            self.runner.cancel(f"its video layer '{event.value.name}' was deleted")
        self._refresh_videos()

    def video_layer(self) -> Image:
        """The selected (T, H, W) Image layer."""
        name = self.video_panel.video_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("choose a (T, H, W) video Image layer")
        return self.viewer.layers[name]

    def prompts_layer(self) -> Points:
        """The prompt Points layer (2-D, over the video), created if needed, active and in add mode."""
        if PROMPTS_NAME in self.viewer.layers:
            layer = self.viewer.layers[PROMPTS_NAME]
        else:
            kwargs: dict[str, Any] = {"size": 4}
            try:
                video = self.video_layer()
                kwargs = {"scale": video.scale[-2:], "translate": video.translate[-2:],
                          "size": point_size(video)}
            except ValueError:
                pass
            layer = self.viewer.add_points(
                np.zeros((0, 2)), name=PROMPTS_NAME,
                features={"roi_id": np.zeros(0, int), "label": np.zeros(0, int)}, **kwargs,
            )
        self._update_defaults(layer=layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        return layer

    def _update_defaults(self, *_: Any, layer: Points | None = None) -> None:
        if layer is None:
            if PROMPTS_NAME not in self.viewer.layers:
                return
            layer = self.viewer.layers[PROMPTS_NAME]
        negative = self.video_panel.negative_check.isChecked()
        # current_face_color also recolours selected points: deselect (a new point is selected)
        layer.selected_data = set()
        layer.feature_defaults = {"roi_id": self.video_panel.roi_spin.value(), "label": 0 if negative else 1}
        layer.current_face_color = NEGATIVE_COLOR if negative else POSITIVE_COLOR
        layer.current_symbol = "cross" if negative else "disc"

    # -- running --------------------------------------------------------------
    def _settings(self) -> tuple:
        video_layer = self.video_layer()
        if PROMPTS_NAME not in self.viewer.layers:
            raise ValueError("add prompt points first (Prompt layer button)")
        rois = prompts_from_points(self.viewer.layers[PROMPTS_NAME])
        data = video_layer.data[0] if video_layer.multiscale else video_layer.data
        pixel_size, frame_rate = self.method_panel.calibration()
        method = self.method_panel.method().value
        weights = self.method_panel.weights_edit.text().strip() or None
        span = self.method_panel.span()
        return data, rois, method, weights, pixel_size, frame_rate, tuple(video_layer.scale), span

    def run(self) -> None:
        """Start the flow job (no-op while one is running)."""
        if self.runner.busy or self._closed:
            return
        try:
            args = self._settings()
            self._job_video = self.video_layer()
        except (ValueError, FileNotFoundError) as exc:
            show_error(f"SAM2Flow: {exc}")
            return
        self.runner.start(_flow_job, *args, on_end=self._on_end)

    def cancel(self) -> None:
        """Stop after the frame pair in flight; no layer is added."""
        self.runner.cancel()

    def _on_end(self, end: JobEnd) -> None:
        self.last_end, self._job_video = end, None
        if end.outcome is Outcome.DONE:
            self._add_result(*end.value)
        elif end.outcome is Outcome.CANCELLED:
            show_info(f"SAM2Flow: {end.reason} after {end.done or 0} of {end.total or '?'} frame pairs; "
                      "no layer was added")
        else:
            show_error(f"SAM2Flow: {end.describe_error()}")

    def _add_result(self, result: Any, layers: list) -> None:
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
                self._plot_dock = window.add_dock_widget(self.plot, name="SAM2Flow speed", area="bottom")
        calibrated = result.mean_speed_um_s is not None
        speeds = result.mean_speed_um_s if calibrated else result.mean_speed_px
        self.plot.plot(speeds, result.roi_ids, "µm/s" if calibrated else "px/frame")

    def teardown(self) -> None:
        """Cancel the job and disconnect from the viewer (the dock was closed)."""
        self._closed = True
        self.runner.cancel("the dock was closed")
        self.adapt_panel.runner.cancel("the dock was closed")
        self.connections.release_all()
