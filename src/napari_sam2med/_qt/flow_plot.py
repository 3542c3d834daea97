"""The SAM2Flow dock's plot of mean speed over time, one line per ROI."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QVBoxLayout, QWidget


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
