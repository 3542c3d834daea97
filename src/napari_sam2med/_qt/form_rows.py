"""Form rows the job docks share: Batch, Fine-tune and the segment dock's auto-segment panel.

Small builders (combos, line edits, a path row, a form from ``(label, field)`` pairs, the
Run / Cancel / progress / status controls), the image-size field's parser, and
:class:`PromptEncoderCombo`, the AutoSAM2 prompt-encoder chooser (shipped encoders,
"Open file…", optionally "none").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

__all__ = ["OPEN_FILE", "NO_ENCODER", "VIDEO_MODES", "combo", "line_edit", "spin_box", "path_row", "form",
           "job_controls", "image_size", "video_mode_combo", "shipped_encoders", "PromptEncoderCombo"]

OPEN_FILE = "Open file\u2026"
NO_ENCODER = "none"
VIDEO_MODES = ("per-frame", "first-frame-propagate")  # auto.infer.VideoMode values


def combo(items: Iterable[str], current: str | None = None, *, editable: bool = False,
          tooltip: str = "") -> QComboBox:
    """A combo box of ``items`` (``current`` selected when it is one of them)."""
    box = QComboBox()
    box.setEditable(editable)
    box.addItems(list(items))
    if current is not None and box.findText(current) >= 0:
        box.setCurrentText(current)
    if tooltip:
        box.setToolTip(tooltip)
    return box


def line_edit(placeholder: str = "") -> QLineEdit:
    """An empty line edit showing ``placeholder``."""
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    return edit


def spin_box(low: int, high: int, value: int) -> QSpinBox:
    """An integer spin box over ``[low, high]`` set to ``value``."""
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    return spin


def path_row(edit: QLineEdit, *buttons: QPushButton) -> QHBoxLayout:
    """A line edit followed by its picker buttons, on one row."""
    row = QHBoxLayout()
    for item in (edit, *buttons):
        row.addWidget(item)
    return row


def form(rows: Iterable[tuple[str, Any]]) -> QFormLayout:
    """A form of ``(label, widget or layout)`` rows, in order."""
    layout = QFormLayout()
    for label, field in rows:
        layout.addRow(label, field)
    return layout


def job_controls(run_text: str, status_text: str = "") -> tuple[QPushButton, QPushButton, QProgressBar, QLabel]:
    """Run and Cancel buttons, a progress bar and a word-wrapped status line."""
    status = QLabel(status_text)
    status.setWordWrap(True)
    return QPushButton(run_text), QPushButton("Cancel"), QProgressBar(), status


def image_size(box: QComboBox) -> int | None:
    """The size a size combo holds: None for its first item (the default) or an empty text.

    Raises
    ------
    ValueError
        The (editable) combo holds something other than a whole number.
    """
    text = box.currentText().strip()
    if text in ("", box.itemText(0)):
        return None
    if not text.isdigit():
        raise ValueError(f"image size must be a number, got {text!r}")
    return int(text)


def video_mode_combo() -> QComboBox:
    """``per-frame`` / ``first-frame-propagate`` (item data: the mode), as ``sam2med auto --video-mode``."""
    box = QComboBox()
    for mode in VIDEO_MODES:
        box.addItem(mode, mode)
    return box


def shipped_encoders() -> list[str]:
    """Names of the prompt encoders shipped with the package (``auto.shipped``; [] when none)."""
    try:
        from ..auto.shipped import list_shipped_prompt_encoders
    except ImportError:
        return []
    return [str(getattr(n, "name", n)) for n in list_shipped_prompt_encoders()]


class PromptEncoderCombo(QComboBox):
    """AutoSAM2 prompt-encoder chooser: [``none``,] shipped names, chosen files, "Open file…".

    Choosing "Open file…" asks for a file (:meth:`browse`). :meth:`encoder` gives the choice.

    Parameters
    ----------
    shipped : list of str
        Shipped encoder names to offer.
    allow_none : bool
        Offer ``none`` first (and select it).
    """

    def __init__(self, shipped: Iterable[str], *, allow_none: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if allow_none:
            self.addItem(NO_ENCODER, ("none", ""))
        for name in shipped:
            self.addItem(name, ("shipped", name))
        self.addItem(OPEN_FILE, None)
        self.activated.connect(self._on_activated)

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) is None:  # "Open file…"
            self.browse()

    def browse(self) -> bool:
        """Ask for a prompt-encoder file; returns whether one was chosen."""
        path, _ = QFileDialog.getOpenFileName(self, "AutoSAM2 prompt encoder", "",
                                              "Prompt encoder (*.pt);;All files (*)")
        if not path:
            return False
        self.add_file(path)
        return True

    def add_file(self, path: str | Path) -> None:
        """Offer ``path`` (above "Open file…") and select it."""
        data = ("file", str(path))
        index = self.findData(data)
        if index < 0:
            index = self.count() - 1
            self.insertItem(index, Path(path).name, data)
            self.setItemData(index, str(path), Qt.ItemDataRole.ToolTipRole)
        self.setCurrentIndex(index)

    def encoder(self) -> tuple[str, str] | None:
        """``("none", "")``, ``("shipped", name)``, ``("file", path)``, or None ("Open file…" is selected)."""
        data = self.currentData()
        return None if data is None else (str(data[0]), str(data[1]))
