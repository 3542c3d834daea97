"""Keyboard shortcuts of the segment dock, and the help panel that lists them.

The keys avoid napari's own bindings of the Labels, Points and Shapes layers
(``S`` selects points, ``P`` paints, ...), except on the dock's own layers,
where the dock's meaning wins. Each is bound on the viewer and on the dock's
layers (a layer's keymap is asked before the viewer's).
"""

from __future__ import annotations

from enum import Enum

from qtpy.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout


class Shortcut(Enum):
    """``(napari key, text shown, what it does)``."""

    SEGMENT = ("Shift-S", "Shift+S", "segment the current slice")
    PROPAGATE = ("Shift-P", "Shift+P", "propagate through the stack")
    NEW_OBJECT = ("N", "N", "next / new object")
    TOGGLE = ("T", "T", "toggle positive / negative clicks")
    CLEAR_SLICE = ("Shift-X", "Shift+X", "clear the object's prompts on this slice")
    COMMIT = ("C", "C", "accept: commit the object into the committed layer")
    UNDO = ("Control-Z", "Ctrl+Z", "undo")
    REDO = ("Control-Shift-Z", "Ctrl+Shift+Z", "redo")

    @property
    def key(self) -> str:
        return self.value[0]

    @property
    def text(self) -> str:
        return self.value[1]

    @property
    def description(self) -> str:
        return self.value[2]

    def tooltip(self, what: str | None = None) -> str:
        """Tooltip text naming the shortcut."""
        return f"{(what or self.description).capitalize()} ({self.text})"


def help_html() -> str:
    """The shortcuts as an HTML table."""
    rows = "".join(f"<tr><td><b>{s.text}</b></td><td>{s.description}</td></tr>" for s in Shortcut)
    extra = ("<tr><td><b>Shift/Alt+click</b></td><td>a click of the other polarity</td></tr>")
    return f"<table cellspacing='4'>{rows}{extra}</table>"


class ShortcutHelp(QGroupBox):
    """A collapsible list of the dock's keyboard shortcuts."""

    def __init__(self) -> None:
        super().__init__()
        self.toggle = QPushButton("Keyboard shortcuts \u25b8")
        self.toggle.setCheckable(True)
        self.toggle.setFlat(True)
        self.table = QLabel(help_html())
        self.table.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.toggle)
        layout.addWidget(self.table)
        self.toggle.toggled.connect(self._on_toggled)

    def _on_toggled(self, on: bool) -> None:
        self.table.setVisible(on)
        self.toggle.setText("Keyboard shortcuts \u25be" if on else "Keyboard shortcuts \u25b8")
