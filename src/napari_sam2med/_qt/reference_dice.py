"""The segment dock's "Compare with a reference" box: per-object Dice against a chosen Labels layer.

A reference is any Labels layer of the image's shape that the dock did not make (for the
synthetic samples, their ``... ground truth`` layer, which is preselected). Each object of the
dock's labels is scored against the reference object it overlaps most (the same id when it
overlaps none), over the whole stack and on the shown slice, with ``engine.metrics.dice``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

__all__ = ["ObjectDice", "reference_dice", "ReferenceDicePanel", "REFERENCE_HINT"]

#: Words in a layer name that make it the preselected reference.
REFERENCE_HINT = "ground truth"
NONE = "(none)"


@dataclass(frozen=True)
class ObjectDice:
    """Dice of one predicted object against its reference object (``ref_id`` None: no such object)."""

    obj_id: int
    ref_id: int | None
    dice: float
    slice_dice: float | None = None


def reference_dice(pred: Any, ref: Any, slice_index: tuple | None = None) -> list[ObjectDice]:
    """Per-object Dice of a predicted label volume against a reference label volume.

    Parameters
    ----------
    pred, ref : array-like of int
        Label arrays of the same shape (0 = background).
    slice_index : tuple, optional
        Index of one slice in both arrays (e.g. the shown one): its Dice is reported too.

    Returns
    -------
    list of ObjectDice
        One per non-zero id of ``pred``, in id order; each matched to the reference id it
        overlaps most, else to the same id if the reference has it (Dice 0), else none (Dice 0).
    """
    from ..engine.metrics import dice

    p, r = np.asarray(pred), np.asarray(ref)
    if p.shape != r.shape:
        raise ValueError(f"the reference has shape {r.shape}, the labels {p.shape}: pick a layer of this image")
    ref_ids = set(int(i) for i in np.unique(r) if i)
    rows = []
    for oid in (int(i) for i in np.unique(p) if i):
        mine = p == oid
        hits = np.bincount(r[mine].ravel().astype(np.int64)) if mine.any() else np.zeros(1, np.int64)
        hits[0] = 0
        match = int(hits.argmax()) if hits.max() > 0 else (oid if oid in ref_ids else None)
        theirs = r == match if match is not None else np.zeros_like(mine)
        per_slice = None
        if slice_index is not None:
            per_slice = dice(mine[slice_index], theirs[slice_index])
        rows.append(ObjectDice(oid, match, dice(mine, theirs), per_slice))
    return rows


class ReferenceDicePanel(QGroupBox):
    """Reference Labels layer + "Compute Dice" + a per-object table (see the module docstring).

    Parameters
    ----------
    dock : SegmentWidget
        Gives ``viewer``, ``connections``, ``state`` (the current image's annotation),
        ``current_slice()`` and ``object_name(ann, obj_id)``.
    """

    def __init__(self, dock: Any) -> None:
        super().__init__("Compare with a reference")
        self.dock = dock
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip("A Labels layer to score the segmentation against (e.g. ground truth)")
        self.compute_button = QPushButton("Compute Dice")
        self.result = QLabel("Pick a reference Labels layer, then Compute Dice.")
        self.result.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Reference"))
        row.addWidget(self.reference_combo, 1)
        row.addWidget(self.compute_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.result)
        self.compute_button.clicked.connect(self.compute)
        layers = dock.viewer.layers.events
        for event in (layers.inserted, layers.removed):
            dock.connections.connect(dock.viewer, event, lambda *_: self.refresh())
        self.refresh()

    def _candidates(self) -> list:
        from napari.layers import Labels

        from .segment_layers import META_KEY

        return [layer for layer in self.dock.viewer.layers
                if isinstance(layer, Labels) and META_KEY not in layer.metadata]

    def refresh(self) -> None:
        """List the reference candidates; keep the choice, else preselect a ground-truth layer."""
        names = [layer.name for layer in self._candidates()]
        current = self.reference_combo.currentText()
        self.reference_combo.blockSignals(True)
        self.reference_combo.clear()
        self.reference_combo.addItems([NONE, *names])
        hinted = [n for n in names if REFERENCE_HINT in n.lower()]
        pick = current if current in names else (hinted[0] if hinted else NONE)
        self.reference_combo.setCurrentText(pick)
        self.reference_combo.blockSignals(False)

    def reference_layer(self) -> Any:
        """The chosen reference layer, or None."""
        name = self.reference_combo.currentText()
        return next((layer for layer in self._candidates() if layer.name == name), None)

    def compute(self) -> list[ObjectDice] | None:
        """Score the current image's labels against the reference and show the table."""
        dock, ref = self.dock, self.reference_layer()
        ann = dock.state
        if ref is None:
            self.result.setText("No reference: pick a Labels layer (e.g. the sample's ground truth).")
            return None
        if ann.labels_layer is None or ann.geometry is None:
            self.result.setText("Nothing segmented yet on this image.")
            return None
        try:
            index = ann.geometry.full_index(dock.current_slice())
            rows = reference_dice(ann.labels_layer.data, ref.data, index)
        except ValueError as err:
            self.result.setText(f"<span style='color:#ff6060'>\u26a0 {err}</span>")
            return None
        if not rows:
            self.result.setText("Nothing segmented yet on this image.")
            return rows
        lines = ["<table><tr><th align='left'>object</th><th>reference</th><th>Dice (stack)</th>"
                 "<th>Dice (this slice)</th></tr>"]
        for row in rows:
            ref_name = "none" if row.ref_id is None else str(row.ref_id)
            lines.append(f"<tr><td>{dock.object_name(ann, row.obj_id)}</td><td align='center'>{ref_name}</td>"
                         f"<td align='center'>{row.dice:.3f}</td><td align='center'>{row.slice_dice:.3f}</td></tr>")
        lines.append(f"</table><i>against '{ref.name}'</i>")
        self.result.setText("".join(lines))
        return rows
