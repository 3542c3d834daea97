"""Plain Qt panels of the segmentation widget (no napari logic, no model calls)."""

from __future__ import annotations

from enum import Enum
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

from ..io.axes import Axis, parse_axis
from .shortcuts import Shortcut


class Direction(Enum):
    """Propagation direction: ``value`` is the engine's name, ``label`` the text shown."""

    BOTH = "both"
    FORWARD = "forward"
    BACKWARD = "backward"

    @property
    def label(self) -> str:
        return {"both": "both ways", "forward": "up (increasing index)",
                "backward": "down (decreasing index)"}[self.value]


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
        self.clear_button.setToolTip("Delete every prompt of the current object (its labels stay)")
        self.clear_slice_button = QPushButton("Clear on this slice")
        self.commit_button = QPushButton("Commit object")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        for widget, shortcut in ((self.new_object_button, Shortcut.NEW_OBJECT),
                                 (self.segment_button, Shortcut.SEGMENT),
                                 (self.clear_slice_button, Shortcut.CLEAR_SLICE),
                                 (self.commit_button, Shortcut.COMMIT), (self.undo_button, Shortcut.UNDO),
                                 (self.redo_button, Shortcut.REDO), (self.positive_button, Shortcut.TOGGLE),
                                 (self.negative_button, Shortcut.TOGGLE)):
            widget.setToolTip(shortcut.tooltip())

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
        grid.addWidget(self.clear_slice_button, 2, 0)
        grid.addWidget(self.commit_button, 2, 1)
        grid.addWidget(self.mask_button, 3, 0, 1, 2)
        grid.addWidget(self.undo_button, 4, 0)
        grid.addWidget(self.redo_button, 4, 1)
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
        for direction in Direction:
            self.direction_combo.addItem(direction.label, direction)
        self.memory_combo = QComboBox()  # engine.memory.MemoryKind values (issue 12)
        self.memory_combo.addItem("SAM2", "sam2")
        self.memory_combo.addItem("SLM-SAM2 (short-long)", "slm")
        self.memory_combo.setToolTip(
            "SAM2: SAM2's own memory (prompted slices, the last 6 slices). The default; use it with SAM2 / "
            "MedSAM2 weights.\nSLM-SAM2: adds a short-term memory of the previous slice, fused with SAM2's. "
            "Made for one annotated slice propagated through a volume; use it with weights trained for it "
            "(sam2med train --memory slm). With other weights it predicts like SAM2, ~1.5x slower.")
        self.view_axis_combo = QComboBox()  # io.axes.Axis (issue 16); shown for 3D grayscale volumes only
        for axis in Axis:
            self.view_axis_combo.addItem(axis.value.capitalize(), axis)
        self.view_axis_combo.setToolTip(
            "Slice direction to segment and propagate along (3D grayscale volumes). Axial is the default; "
            "many structures are easier to propagate along another axis.\nChanging it shows those slices; "
            "it is refused while the image has prompts (clear them first).")
        self.all_slices = QCheckBox("all slices")
        self.all_slices.setChecked(True)
        self.first_spin = QSpinBox()
        self.last_spin = QSpinBox()
        self.current_only = QCheckBox("only the current object")
        self.run_button = QPushButton("Propagate")
        self.run_button.setToolTip(Shortcut.PROPAGATE.tooltip())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the slice in flight; the slices written so far are kept")
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
        form.addRow("Memory", self.memory_combo)
        form.addRow("Axis", self.view_axis_combo)
        self._form = form
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
        """The engine's name of the chosen :class:`Direction`."""
        return self.direction_combo.currentData().value

    def show_view_axis(self, axis: Any) -> None:
        """Show the axis selector set to ``axis`` (an ``Axis``), or hide it (``None``: not a 3D gray volume)."""
        combo = self.view_axis_combo
        combo.blockSignals(True)
        if axis is not None:
            combo.setCurrentIndex(combo.findText(parse_axis(axis).value.capitalize()))
        combo.blockSignals(False)
        if hasattr(self._form, "setRowVisible"):  # Qt >= 6.4 hides the label too
            self._form.setRowVisible(combo, axis is not None)
        combo.setVisible(axis is not None)
        combo.setEnabled(axis is not None)

    def view_axis(self) -> Any:
        """The chosen :class:`~napari_sam2med.io.axes.Axis` (Qt may hand the item back as a plain str)."""
        data = self.view_axis_combo.currentData()
        return None if data is None else parse_axis(data)

    def memory(self) -> str:
        """The chosen memory: ``"sam2"`` or ``"slm"`` (``engine.memory.MemoryKind``)."""
        return self.memory_combo.currentData()
