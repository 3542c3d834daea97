"""Plain Qt panels of the SAM2Flow dock: the video and its prompts, and the method and calibration."""

from __future__ import annotations

from enum import Enum

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
)

from ..flow.command import METHODS

#: The flow estimators, one member per name the CLI accepts (``FlowMethod.TVL1.value == "tvl1"``).
FlowMethod = Enum("FlowMethod", {name.upper(): name for name in METHODS})


class VideoPanel(QGroupBox):
    """Which video, and the prompt points (ROI id, positive/negative)."""

    def __init__(self) -> None:
        super().__init__("Video and prompts")
        self.video_combo = QComboBox()
        self.video_combo.setToolTip("A (T, H, W) Image layer")
        self.add_prompts_btn = QPushButton("Prompt layer")
        self.add_prompts_btn.setToolTip("Select the prompt points layer in add mode: click inside a vessel")
        self.negative_check = QCheckBox("negative point")
        self.roi_spin = QSpinBox()
        self.roi_spin.setRange(1, 255)
        self.roi_spin.setToolTip("The vessel (ROI) the next points belong to")
        form = QFormLayout(self)
        form.addRow("video", self.video_combo)
        row = QHBoxLayout()
        row.addWidget(self.add_prompts_btn)
        row.addWidget(self.negative_check)
        form.addRow("prompts", row)
        form.addRow("ROI id", self.roi_spin)

    def set_videos(self, names: list[str]) -> None:
        """Refill the video list, keeping the selection when it is still there."""
        current = self.video_combo.currentText()
        self.video_combo.blockSignals(True)
        self.video_combo.clear()
        self.video_combo.addItems(names)
        if current in names:
            self.video_combo.setCurrentText(current)
        self.video_combo.blockSignals(False)


class MethodPanel(QGroupBox):
    """Estimator, weights and calibration (pixel size and frame rate give µm/s)."""

    def __init__(self, default: FlowMethod) -> None:
        super().__init__("Method")
        self.method_combo = QComboBox()
        for method in FlowMethod:
            self.method_combo.addItem(method.value, method)
        self.method_combo.setCurrentIndex(list(FlowMethod).index(default))
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("SAM2Flow checkpoint (blank: shipped weights)")
        self.span_spin = QSpinBox()  # sam2flow's k-frame fusion for slow cells (`sam2med flow --span`)
        self.span_spin.setRange(1, 8)
        self.span_spin.setSpecialValueText("1 (off)")
        self.span_spin.setToolTip("sam2flow: also compare each frame with the one K frames back and use that "
                                  "flow / K where cells move slowly (sub-pixel, noisy); twice the time")
        self.pixel_spin = QDoubleSpinBox()
        self.fps_spin = QDoubleSpinBox()
        for spin, suffix in ((self.pixel_spin, " µm"), (self.fps_spin, " fps")):
            spin.setRange(0.0, 1e6)
            spin.setDecimals(4)
            spin.setSpecialValueText("not set")  # 0 = uncalibrated
            spin.setSuffix(suffix)
        form = QFormLayout(self)
        form.addRow("method", self.method_combo)
        form.addRow("weights", self.weights_edit)
        form.addRow("frame span", self.span_spin)
        form.addRow("pixel size", self.pixel_spin)
        form.addRow("frame rate", self.fps_spin)

    def method(self) -> FlowMethod:
        return list(FlowMethod)[self.method_combo.currentIndex()]

    def set_method(self, method: FlowMethod | str) -> None:
        self.method_combo.setCurrentIndex(list(FlowMethod).index(FlowMethod(method)))

    def span(self) -> int:
        """The k-frame span (1 = off); only sam2flow has it.

        Raises
        ------
        ValueError
            A span above 1 with a classical method.
        """
        span = self.span_spin.value()
        if span > 1 and self.method() is not FlowMethod.SAM2FLOW:
            raise ValueError(f"frame span applies to sam2flow only, not {self.method().value}: set it to 1")
        return span

    def calibration(self) -> tuple[float | None, float | None]:
        """``(pixel size µm, frames per second)``, both None when uncalibrated.

        Raises
        ------
        ValueError
            When only one of the two is set.
        """
        pixel, fps = self.pixel_spin.value(), self.fps_spin.value()
        if (pixel > 0) != (fps > 0):
            raise ValueError("set both pixel size and frame rate for µm/s, or neither")
        return (pixel, fps) if pixel > 0 else (None, None)
