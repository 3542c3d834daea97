"""Plain Qt panels of the segmentation widget (no napari logic, no model calls)."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
)

DIRECTIONS = (("both ways", "both"), ("up (increasing index)", "forward"), ("down (decreasing index)", "backward"))


class ImagePanel(QGroupBox):
    """Image layer and stack axis choice."""

    def __init__(self) -> None:
        super().__init__("Image")
        self._layers: list[Any] = []
        self.image_combo = QComboBox()
        self.axis_combo = QComboBox()
        self.axis_combo.setToolTip("Which axis runs through slices (Z) or frames (T); the last two axes are the image plane")
        form = QFormLayout(self)
        form.addRow("Image layer", self.image_combo)
        form.addRow("Z/T axis", self.axis_combo)

    def set_images(self, layers: list[Any]) -> None:
        """Refill the layer list, keeping the selection; emits a change only if the current layer changed."""
        before = self.current_image()
        self.image_combo.blockSignals(True)
        self._layers = list(layers)
        self.image_combo.clear()
        self.image_combo.addItems([layer.name for layer in self._layers])
        index = next((i for i, layer in enumerate(self._layers) if layer is before), 0)
        self.image_combo.setCurrentIndex(index if self._layers else -1)
        self.image_combo.blockSignals(False)
        if self.current_image() is not before:
            self.image_combo.currentIndexChanged.emit(self.image_combo.currentIndex())

    def current_image(self) -> Any:
        index = self.image_combo.currentIndex()
        return self._layers[index] if 0 <= index < len(self._layers) else None

    def set_axes(self, axes: list[int], names: list[str]) -> None:
        self.axis_combo.blockSignals(True)
        self.axis_combo.clear()
        for axis, name in zip(axes, names):
            self.axis_combo.addItem(f"axis {axis}: {name}", axis)
        if axes:
            # Default: the axis just before the image plane (Z in a (T, Z, Y, X) layer).
            self.axis_combo.setCurrentIndex(len(axes) - 1)
        self.axis_combo.setEnabled(len(axes) > 1)
        self.axis_combo.blockSignals(False)

    def stack_axis(self) -> int:
        axis = self.axis_combo.currentData()
        return 0 if axis is None else int(axis)


class PromptPanel(QGroupBox):
    """Object selector, prompt tools and undo/redo."""

    def __init__(self) -> None:
        super().__init__("Prompts")
        self.object_spin = QSpinBox()
        self.object_spin.setRange(1, 2**31 - 1)
        self.object_spin.setToolTip("Object id; follows the Labels layer's selected label")
        self.new_object_button = QPushButton("New object")
        self.positive_button = QRadioButton("positive (+)")
        self.negative_button = QRadioButton("negative (\u2212)")
        self.positive_button.setChecked(True)
        self._polarity = QButtonGroup(self)
        self._polarity.addButton(self.positive_button)
        self._polarity.addButton(self.negative_button)
        self.mode_label = QLabel()
        self.points_button = QPushButton("Click points")
        self.box_button = QPushButton("Draw box")
        self.mask_button = QPushButton("Use this label as mask prompt")
        self.mask_button.setToolTip("The current object's pixels on the current slice become its prompt")
        self.segment_button = QPushButton("Segment slice")
        self.clear_button = QPushButton("Clear object's prompts")
        self.undo_button = QPushButton("Undo (Ctrl+Z)")
        self.redo_button = QPushButton("Redo (Ctrl+Shift+Z)")

        row = QHBoxLayout()
        row.addWidget(QLabel("Object"))
        row.addWidget(self.object_spin, 1)
        row.addWidget(self.new_object_button)
        polarity = QHBoxLayout()
        polarity.addWidget(self.positive_button)
        polarity.addWidget(self.negative_button)
        grid = QGridLayout()
        grid.addWidget(self.points_button, 0, 0)
        grid.addWidget(self.box_button, 0, 1)
        grid.addWidget(self.segment_button, 1, 0)
        grid.addWidget(self.clear_button, 1, 1)
        grid.addWidget(self.mask_button, 2, 0, 1, 2)
        grid.addWidget(self.undo_button, 3, 0)
        grid.addWidget(self.redo_button, 3, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(polarity)
        layout.addWidget(self.mode_label)
        layout.addLayout(grid)
        self.update_mode_label()

    def update_mode_label(self) -> None:
        if self.negative_button.isChecked():
            text = "Mode: <b style='color:#ff3344'>negative</b> (Shift/Alt-click adds a positive point)"
        else:
            text = "Mode: <b style='color:#22dd44'>positive</b> (Shift/Alt-click adds a negative point)"
        self.mode_label.setText(text)


class PropagatePanel(QGroupBox):
    """Direction, slice range, objects, run/cancel and progress."""

    def __init__(self) -> None:
        super().__init__("Propagate")
        self.direction_combo = QComboBox()
        for text, value in DIRECTIONS:
            self.direction_combo.addItem(text, value)
        self.all_slices = QCheckBox("all slices")
        self.all_slices.setChecked(True)
        self.first_spin = QSpinBox()
        self.last_spin = QSpinBox()
        self.current_only = QCheckBox("only the current object")
        self.run_button = QPushButton("Propagate")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setValue(0)

        span = QHBoxLayout()
        span.addWidget(self.all_slices)
        span.addWidget(QLabel("from"))
        span.addWidget(self.first_spin)
        span.addWidget(QLabel("to"))
        span.addWidget(self.last_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form = QFormLayout()
        form.addRow("Direction", self.direction_combo)
        form.addRow("Slices", span)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.current_only)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        self.all_slices.toggled.connect(self._on_all_toggled)
        self._on_all_toggled(True)

    def _on_all_toggled(self, on: bool) -> None:
        self.first_spin.setEnabled(not on)
        self.last_spin.setEnabled(not on)

    def set_slice_count(self, n: int) -> None:
        for spin in (self.first_spin, self.last_spin):
            spin.setRange(0, max(0, n - 1))
        self.first_spin.setValue(0)
        self.last_spin.setValue(max(0, n - 1))

    def slice_range(self, n: int) -> tuple[int, int]:
        """``(start, stop)`` half-open range of slices to write."""
        if self.all_slices.isChecked():
            return 0, n
        lo, hi = sorted((self.first_spin.value(), self.last_spin.value()))
        return min(lo, n - 1), min(hi, n - 1) + 1

    def direction(self) -> str:
        return str(self.direction_combo.currentData())

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
