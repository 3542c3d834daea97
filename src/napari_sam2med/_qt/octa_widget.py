"""OCTA dock widget (SAM-OCTA2): load a case, prompt, propagate through layers, score.

The heavy work is :mod:`napari_sam2med.octa.pipeline`, run in a napari
``thread_worker`` (progress bar + Cancel). Prompts are either automatic (from
a reference Labels layer on one layer, counts configurable) or manual (the
"OCTA prompts" Points layer: each point's ``object`` and ``positive``
features say which object it prompts and whether it is a positive click).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit,
    QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from ..octa import datasets as ds
from ..octa.metrics import METRIC_NAMES, sequence_metrics
from ..octa.pipeline import OctaConfig, run_layer_sequence, run_manual, run_projection
from ..octa.prompts import PromptConfig
from ._worker import RunCancelMixin, relay_progress
from .model_panel import ModelPanel

IMAGE_NAME = "OCTA layers"
GT_NAME = "OCTA ground truth"
OBJECTS_NAME = "OCTA vessel objects"
PROMPTS_NAME = "OCTA prompts"
KINDS = ("layer sequence", "projections")
MODES = ("automatic prompts", "manual prompts")
NONE = "(none)"


def _octa_job(model, images, mode: str, projection: bool, reference, ref_layer: int, clicks,
              config: OctaConfig, gt, names):
    """Worker generator: yields (done, total); returns (layer tuples, metric rows or None)."""
    if mode == MODES[1]:
        gen = run_manual(model, images, clicks, config)
    elif projection:
        gen = run_projection(model, images, reference, config)
    else:
        gen = run_layer_sequence(model, images, reference, ref_layer, config)
    layers = yield from relay_progress(gen)
    rows = None
    if gt is not None:
        pred = layers[0][0]
        pred = pred[None] if pred.ndim == 2 else pred
        rows = sequence_metrics(pred > 0, gt, layer_names=names if len(names) == len(pred) else None)
    return layers, rows


class OctaWidget(RunCancelMixin, QWidget):
    """Dock widget for SAM-OCTA2-style OCTA vessel / FAZ segmentation.

    Cancel stops the worker after the layer in flight; no layer is added then.
    """

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.model = None
        self.worker = None
        self.case_kind = KINDS[0]
        self.layer_names: list[str] = []
        self.last_rows: list[dict] | None = None

        self.model_panel = ModelPanel()
        self.model_panel.model_loaded.connect(self.set_model)

        case_box = QGroupBox("Case")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("layer-sequence folder or OCTA-500 root")
        browse = QPushButton("...")
        browse.clicked.connect(self._browse)
        self.kind_combo = QComboBox()
        self.kind_combo.addItems(KINDS)
        self.case_edit = QLineEdit()
        self.case_edit.setPlaceholderText("case id (projections; empty = the only one)")
        load_btn = QPushButton("Load case")
        load_btn.clicked.connect(self._load_clicked)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        case_form = QFormLayout(case_box)
        case_form.addRow("Path", row)
        case_form.addRow("Kind", self.kind_combo)
        case_form.addRow("Case", self.case_edit)
        case_form.addRow(load_btn)

        run_box = QGroupBox("Segment")
        self.task_combo = QComboBox()
        self.task_combo.addItems(["rv", "faz"])
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        self.image_combo, self.reference_combo, self.gt_combo = QComboBox(), QComboBox(), QComboBox()
        self.ref_spin = QSpinBox()
        self.ref_spin.setRange(0, 10_000)
        self.pos_spin, self.neg_spin, self.seed_spin = QSpinBox(), QSpinBox(), QSpinBox()
        self.pos_spin.setRange(1, 50)
        self.pos_spin.setValue(3)
        self.neg_spin.setRange(0, 50)
        self.neg_spin.setValue(3)
        self.seed_spin.setRange(0, 1_000_000)
        self.object_spin = QSpinBox()
        self.object_spin.setRange(1, 999)
        self.negative_check = QCheckBox("negative click")
        prompt_btn = QPushButton("Prompt layer")
        prompt_btn.clicked.connect(self.prompts_layer)
        self.object_spin.valueChanged.connect(self._update_point_defaults)
        self.negative_check.toggled.connect(self._update_point_defaults)
        form = QFormLayout(run_box)
        form.addRow("Task", self.task_combo)
        form.addRow("Prompts", self.mode_combo)
        form.addRow("Image", self.image_combo)
        form.addRow("Reference", self.reference_combo)
        form.addRow("Reference layer", self.ref_spin)
        form.addRow("Positives / object", self.pos_spin)
        form.addRow("Negatives / object", self.neg_spin)
        form.addRow("Seed", self.seed_spin)
        manual = QHBoxLayout()
        manual.addWidget(self.object_spin)
        manual.addWidget(self.negative_check)
        manual.addWidget(prompt_btn)
        form.addRow("Manual object", manual)
        form.addRow("Ground truth", self.gt_combo)
        self.run_btn, self.cancel_btn = QPushButton("Run"), QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        self.progress = QProgressBar()
        self.table = QTableWidget(0, 1 + len(METRIC_NAMES))
        self.table.setHorizontalHeaderLabels(["layer", *METRIC_NAMES])

        layout = QVBoxLayout(self)
        for w in (self.model_panel, case_box, run_box):
            layout.addWidget(w)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.table)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    # -- layers -------------------------------------------------------------------
    def _refresh_layers(self, event: Any = None, prefer: bool = False) -> None:
        """Refill the layer combos; ``prefer``: select the case's own layers."""
        images = [l.name for l in self.viewer.layers if isinstance(l, Image)]
        labels = [l.name for l in self.viewer.layers if isinstance(l, Labels)]
        for combo, names, preferred in (
            (self.image_combo, images, IMAGE_NAME),
            (self.reference_combo, labels, OBJECTS_NAME if OBJECTS_NAME in labels else GT_NAME),
            (self.gt_combo, [NONE, *labels], GT_NAME),
        ):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            keep = current if current in names and current != NONE and not prefer else preferred
            if keep in names:
                combo.setCurrentText(keep)
            combo.blockSignals(False)

    def _replace(self, data, meta: dict, layer_type: str):
        if meta["name"] in self.viewer.layers:
            self.viewer.layers.remove(meta["name"])
        return getattr(self.viewer, f"add_{layer_type}")(data, **meta)

    def load_case(self, path: str | Path, kind: str = KINDS[0], case: str | None = None) -> None:
        """Load a layer-sequence folder or the projections of an OCTA-500 case into layers."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        path = Path(path)
        if kind == KINDS[0]:
            seq = ds.read_layer_sequence(path)
            self._replace(seq.images, {"name": IMAGE_NAME}, "image")
            self._replace(seq.masks.astype(np.uint8), {"name": GT_NAME}, "labels")
            if seq.objects is not None:
                self._replace(seq.objects, {"name": OBJECTS_NAME}, "labels")
            elif OBJECTS_NAME in self.viewer.layers:
                self.viewer.layers.remove(OBJECTS_NAME)
            self.task_combo.setCurrentText(seq.task)
            self.layer_names = seq.layer_names
            self.ref_spin.setValue(len(seq) // 2)
        else:
            case = case or next(iter(ds.list_cases(path)), None)
            if case is None:
                raise FileNotFoundError(f"no projection cases under {path}")
            proj = ds.read_projections(path, case)
            self._replace(proj.images, {"name": IMAGE_NAME}, "image")
            gt_name = "FAZ" if self.task_combo.currentText() == "faz" else "LargeVessel"
            gt = ds.read_ground_truth(path, case, gt_name)
            self._replace(gt.astype(np.uint8), {"name": GT_NAME}, "labels")
            self.layer_names = [f"{case} fused"]
            self.ref_spin.setValue(0)
        self.case_kind = kind
        self._refresh_layers(prefer=True)

    def prompts_layer(self):
        """The manual-prompt Points layer (created on first use)."""
        if PROMPTS_NAME not in self.viewer.layers:
            ndim = self.viewer.layers[IMAGE_NAME].ndim if IMAGE_NAME in self.viewer.layers else 3
            layer = self.viewer.add_points(
                np.zeros((0, ndim)), name=PROMPTS_NAME, size=6,
                features={"object": np.zeros(0, int), "positive": np.zeros(0, bool)},
            )
            self._update_point_defaults(layer=layer)
        return self.viewer.layers[PROMPTS_NAME]

    def _update_point_defaults(self, *_: Any, layer=None) -> None:
        layer = layer or (self.viewer.layers[PROMPTS_NAME] if PROMPTS_NAME in self.viewer.layers else None)
        if layer is not None:
            layer.feature_defaults = {"object": self.object_spin.value(),
                                      "positive": not self.negative_check.isChecked()}

    def _clicks(self, n_layers: int) -> list[tuple]:
        if PROMPTS_NAME not in self.viewer.layers or not len(self.viewer.layers[PROMPTS_NAME].data):
            raise ValueError("add points to the 'OCTA prompts' layer first")
        layer = self.viewer.layers[PROMPTS_NAME]
        data = np.asarray(layer.data)
        rows = data if data.shape[1] == 3 else np.column_stack([np.zeros(len(data)), data])
        feats = layer.features
        return [(int(o), int(round(r[0])), float(r[1]), float(r[2]), int(bool(p)))
                for r, o, p in zip(rows, feats["object"], feats["positive"])]

    # -- running --------------------------------------------------------------------
    def set_model(self, model, description: str = "") -> None:
        """Use ``model`` for the next runs (also connected to the model panel)."""
        self.model = model

    def _job_args(self) -> tuple:
        if self.model is None:
            raise ValueError("load a model first")
        if self.image_combo.currentText() not in self.viewer.layers:
            raise ValueError("load a case or choose an image layer")
        images = np.asarray(self.viewer.layers[self.image_combo.currentText()].data)
        if images.ndim == 2:
            images = images[None]
        if images.ndim != 3:
            raise ValueError(f"the image layer must be (L, H, W), got shape {images.shape}")
        projection = self.case_kind == KINDS[1]
        mode, ref_layer = self.mode_combo.currentText(), self.ref_spin.value()
        if not 0 <= ref_layer < len(images):
            raise ValueError(f"reference layer {ref_layer} outside 0..{len(images) - 1}")
        reference, clicks = None, None
        if mode == MODES[1]:
            clicks = self._clicks(len(images))
        else:
            name = self.reference_combo.currentText()
            if name not in self.viewer.layers:
                raise ValueError("choose a reference Labels layer for automatic prompts")
            ref = np.asarray(self.viewer.layers[name].data)
            reference = ref[ref_layer] if ref.ndim == 3 else ref
        gt = None
        if self.gt_combo.currentText() not in ("", NONE):
            gt = np.asarray(self.viewer.layers[self.gt_combo.currentText()].data) > 0
            gt = gt[None] if gt.ndim == 2 else gt
            if projection:  # one 2D ground truth for the three projections
                gt = gt[:1] if mode == MODES[0] else np.repeat(gt[:1], len(images), axis=0)
        config = OctaConfig(task=self.task_combo.currentText(), prompts=PromptConfig(
            n_pos=self.pos_spin.value(), n_neg=self.neg_spin.value(), seed=self.seed_spin.value()))
        names = self.layer_names if gt is not None and len(self.layer_names) == len(gt) else None
        return (self.model, images, mode, projection, reference, ref_layer, clicks, config, gt,
                names or [str(i) for i in range(0 if gt is None else len(gt))])

    def run(self) -> None:
        """Start the OCTA worker (no-op while one runs)."""
        if self.worker is not None:
            return
        try:
            args = self._job_args()
        except (ValueError, FileNotFoundError, KeyError) as exc:
            show_error(f"OCTA: {exc}")
            return
        self._start_job(
            _octa_job, *args, on_returned=self._on_returned,
            on_error=lambda exc: show_error(f"OCTA: {exc}"), on_aborted=lambda: show_info("OCTA: cancelled"),
        )

    def _on_returned(self, value: tuple) -> None:
        layers, rows = value
        for data, meta, layer_type in layers:
            self._replace(data, meta, layer_type)
        self.last_rows = rows
        self.show_metrics(rows or [])

    def show_metrics(self, rows: list[dict]) -> None:
        """Fill the metrics table (one row per layer plus 'overall')."""
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(str(row["layer"])))
            for j, key in enumerate(METRIC_NAMES, start=1):
                self.table.setItem(i, j, QTableWidgetItem(f"{row[key]:.4f}"))

    # -- file dialogs -----------------------------------------------------------------
    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "OCTA case folder")
        if path:
            self.path_edit.setText(path)

    def _load_clicked(self) -> None:
        try:
            self.load_case(self.path_edit.text().strip(), self.kind_combo.currentText(),
                           self.case_edit.text().strip() or None)
        except (ValueError, FileNotFoundError) as exc:
            show_error(f"OCTA: {exc}")
