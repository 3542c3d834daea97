"""The object list of the segment dock: id, colour, name, slices annotated and propagated.

Select a row to work on that object, edit the name in place, untick "shown" to
hide it (its labels disappear and propagation leaves it out), Delete removes
its labels (undoable) and prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

COLUMNS = ("id", "name", "prompted", "propagated", "shown")
BASE_COLORMAP_KEY = "sam2med_base_colormap"


@dataclass(frozen=True)
class ObjectRow:
    """One line of the list."""

    obj_id: int
    name: str
    color: tuple[float, float, float, float]
    prompted: tuple[int, ...]
    propagated: int
    hidden: bool


def object_color(labels_layer: Any, obj_id: int) -> tuple[float, float, float, float]:
    """The colour the labels layer gives ``obj_id`` (its own colormap, ignoring hiding)."""
    if labels_layer is None:
        return (1.0, 1.0, 1.0, 1.0)
    base = labels_layer.metadata.get(BASE_COLORMAP_KEY, labels_layer.colormap)
    rgba = np.asarray(base.map(np.array([obj_id]))).reshape(-1)[:4]
    return tuple(float(c) for c in rgba)


def object_rows(ann: Any) -> list[ObjectRow]:
    """Every object the annotation knows: named, prompted or present in the labels."""
    ids: set[int] = set(ann.objects)
    prompted: dict[int, set[int]] = {}
    for obj_id, slice_idx in list(ann.synced) + list(ann.mask_prompts):
        prompted.setdefault(obj_id, set()).add(slice_idx)
    ids |= set(prompted)
    for layer in (ann.points_layer, ann.shapes_layer):
        if layer is not None and len(layer.data):
            ids |= {int(o) for o in np.asarray(layer.features["obj_id"])}
    if ann.labels_layer is not None:
        if ann.label_ids is None:  # one scan; the dock's writes keep it current afterwards
            ann.label_ids = {int(o) for o in np.unique(np.asarray(ann.labels_layer.data)) if o > 0}
        ids |= ann.label_ids
    rows = []
    for obj_id in sorted(ids):
        info = ann.objects.get(obj_id)
        rows.append(ObjectRow(obj_id, info.name if info else "", object_color(ann.labels_layer, obj_id),
                              tuple(sorted(prompted.get(obj_id, ()))), len(ann.propagated.get(obj_id, ())),
                              bool(info and info.hidden)))
    return rows


def show_only_visible(labels_layer: Any, hidden: set[int]) -> None:
    """Make the ``hidden`` ids transparent in ``labels_layer`` (the base colormap comes back when none is)."""
    from napari.utils.colormaps import DirectLabelColormap

    base = labels_layer.metadata.get(BASE_COLORMAP_KEY)
    if not hidden:
        if base is not None:
            labels_layer.colormap = base
            del labels_layer.metadata[BASE_COLORMAP_KEY]
        return
    if base is None:
        base = labels_layer.metadata[BASE_COLORMAP_KEY] = labels_layer.colormap
    ids = {int(o) for o in np.unique(np.asarray(labels_layer.data)) if o > 0} | set(hidden)
    colors: dict[Any, Any] = {None: np.zeros(4), 0: np.zeros(4)}
    for obj_id in ids:
        colors[obj_id] = np.zeros(4) if obj_id in hidden else np.asarray(base.map(np.array([obj_id]))).reshape(-1)
    labels_layer.colormap = DirectLabelColormap(color_dict=colors)


class ObjectListPanel(QGroupBox):
    """The table of objects with a Delete button.

    Signals
    -------
    selected(int), renamed(int, str), visibility_changed(int, bool), delete_requested(int)
    """

    selected = Signal(int)
    renamed = Signal(int, str)
    visibility_changed = Signal(int, bool)
    delete_requested = Signal(int)

    def __init__(self) -> None:
        super().__init__("Objects")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setToolTip("Double-click a name to rename; untick 'shown' to hide an object")
        self.delete_button = QPushButton("Delete object")
        self.delete_button.setToolTip("Remove the selected object's labels (undoable) and prompts")
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self._filling = False
        self._rows: list[ObjectRow] = []
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemChanged.connect(self._on_item_changed)
        self.delete_button.clicked.connect(self._on_delete)
        self._fit_height()

    def set_rows(self, rows: list[ObjectRow], current: int | None = None) -> None:
        """Show ``rows``; select ``current``."""
        self._filling = True
        try:
            self._rows = list(rows)
            self.table.setRowCount(len(rows))
            for i, row in enumerate(rows):
                swatch = QTableWidgetItem(str(row.obj_id))
                swatch.setBackground(QColor.fromRgbF(*row.color[:3], 1.0))
                swatch.setForeground(QColor("black" if sum(row.color[:3]) > 1.5 else "white"))
                swatch.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                name = QTableWidgetItem(row.name)
                name.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable)
                prompted = QTableWidgetItem(_ranges(row.prompted) or "-")
                propagated = QTableWidgetItem(str(row.propagated) if row.propagated else "-")
                shown = QTableWidgetItem()
                shown.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable)
                shown.setCheckState(Qt.CheckState.Unchecked if row.hidden else Qt.CheckState.Checked)
                for item in (prompted, propagated):
                    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                for j, item in enumerate((swatch, name, prompted, propagated, shown)):
                    self.table.setItem(i, j, item)
            self.select(current)
        finally:
            self._filling = False
        self._fit_height()

    def select(self, obj_id: int | None) -> None:
        ids = [r.obj_id for r in self._rows]
        self._filling, was = True, self._filling
        try:
            if obj_id in ids:
                self.table.selectRow(ids.index(obj_id))
            else:
                self.table.clearSelection()
        finally:
            self._filling = was

    def selected_object(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return self._rows[rows[0].row()].obj_id if rows else None

    def _fit_height(self) -> None:
        # as tall as its rows (3 at least, 8 at most), not a fixed block of empty space
        n = min(max(self.table.rowCount(), 3), 8)
        height = self.table.horizontalHeader().height() + n * self.table.verticalHeader().defaultSectionSize()
        self.table.setFixedHeight(height + 2 * self.table.frameWidth())

    def _on_selection(self) -> None:
        obj_id = self.selected_object()
        if not self._filling and obj_id is not None:
            self.selected.emit(obj_id)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.row() >= len(self._rows):
            return
        row = self._rows[item.row()]
        if item.column() == 1:
            self.renamed.emit(row.obj_id, item.text())
        elif item.column() == 4:
            self.visibility_changed.emit(row.obj_id, item.checkState() != Qt.CheckState.Checked)

    def _on_delete(self) -> None:
        obj_id = self.selected_object()
        if obj_id is not None:
            self.delete_requested.emit(obj_id)


def _ranges(values: tuple[int, ...]) -> str:
    """``(1, 2, 3, 7)`` -> ``"1-3, 7"``."""
    out: list[str] = []
    for v in values:
        if out and out[-1].split("-")[-1] == str(v - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ", ".join(out)
