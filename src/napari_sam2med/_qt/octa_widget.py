"""OCTA dock widget (SAM-OCTA2): load a case, prompt, propagate through layers, score.

The heavy work is :mod:`napari_sam2med.octa.pipeline`, run in the shared job
runner (progress bar, Cancel, errors). Prompts are either automatic (from a
reference Labels layer on one layer, counts configurable) or manual: clicks in
the "OCTA prompts" Points layer, made like the segment dock's prompt layers
(object colour, positive/negative by rim and symbol, size scaled to the image).

The dock is built from sub-widgets (:mod:`.octa_panels`) in a scroll area; the
parameter form is a persisted magicgui form. The model is the viewer's shared
one (:class:`~.viewer_context.ModelManager`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..octa import datasets as ds
from ..octa.metrics import METRIC_NAMES, sequence_metrics
from ..octa.pipeline import OctaConfig, run_layer_sequence, run_manual, run_projection
from ..octa.prompts import PromptConfig
from ._worker import JobEnd, JobRunner, Outcome
from .connections import Connections, DockLifecycle
from .model_panel import ModelPanel
from .object_list import object_color
from .octa_panels import CaseKind, CasePanel, LayersPanel, ManualPromptPanel, OctaTask, ParametersPanel, PromptMode
from .prompt_layers import install_polarity_callback, make_points_layer, recolor_points
from .viewer_context import context_for, unwrap_viewer

IMAGE_NAME = "OCTA layers"
GT_NAME = "OCTA ground truth"
OBJECTS_NAME = "OCTA vessel objects"
PROMPTS_NAME = "OCTA prompts"


def _octa_job(model, images, mode: PromptMode, projection: bool, reference, ref_layer: int, clicks,
              config: OctaConfig, gt, names):
    """Job generator: yields the pipeline's progress; returns (layer tuples, metric rows or None)."""
    if mode is PromptMode.MANUAL:
        gen = run_manual(model, images, clicks, config)
    elif projection:
        gen = run_projection(model, images, reference, config)
    else:
        gen = run_layer_sequence(model, images, reference, ref_layer, config)
    layers = yield from gen
    rows = None
    if gt is not None:
        pred = layers[0][0]
        pred = pred[None] if pred.ndim == 2 else pred
        rows = sequence_metrics(pred > 0, gt, layer_names=names if len(names) == len(pred) else None)
    return layers, rows


def _find(viewer: Any, name: str) -> Any:
    """The layer called ``name``, or None (napari's LayerList has no ``get``)."""
    return next((layer for layer in viewer.layers if layer.name == name), None)


class OctaWidget(DockLifecycle, QWidget):
    """Dock widget for SAM-OCTA2-style OCTA vessel / FAZ segmentation.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it by this name).

    Cancel stops the job after the layer in flight; no layer is added then.
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.context = context_for(self.viewer)
        self.connections = Connections()
        self.case_kind = CaseKind.LAYER_SEQUENCE
        self.layer_names: list[str] = []
        self.last_rows: list[dict] | None = None
        self.last_end: JobEnd | None = None
        self._job_image: Any = None
        self._closed = self._docked = False

        self.model_panel = ModelPanel()
        self.case_panel = CasePanel()
        self.layers_panel = LayersPanel()
        self.params = ParametersPanel()
        self.manual_panel = ManualPromptPanel()
        self.run_btn, self.cancel_btn = QPushButton("Run"), QPushButton("Cancel")
        self.progress = QProgressBar()
        self.runner = JobRunner(self.progress, self.run_btn, self.cancel_btn, parent=self)
        self.table = QTableWidget(0, 1 + len(METRIC_NAMES))
        self.table.setHorizontalHeaderLabels(["layer", *METRIC_NAMES])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._fit_table()

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        inner = QWidget()
        column = QVBoxLayout(inner)
        for w in (self.model_panel, self.case_panel, self.layers_panel, self.params, self.manual_panel):
            column.addWidget(w)
        column.addLayout(buttons)
        column.addWidget(self.progress)
        column.addWidget(self.table)
        column.addStretch(1)
        scroll = QScrollArea()  # taller than a laptop screen otherwise
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

        self.case_panel.load_btn.clicked.connect(self._load_clicked)
        self.manual_panel.prompt_btn.clicked.connect(self.prompts_layer)
        self.manual_panel.object_spin.valueChanged.connect(self._update_point_defaults)
        self.manual_panel.negative_check.toggled.connect(self._update_point_defaults)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        models = self.context.models
        models.acquire(self)
        self.model_panel.model_loaded.connect(models.set_model)
        self.connections.connect(self.viewer, models.changed, self._on_shared_model)
        self.connections.connect(self.viewer, self.viewer.layers.events.inserted, self._refresh_layers)
        self.connections.connect(self.viewer, self.viewer.layers.events.removed, self._on_removed)
        if models.model is not None:
            self.model_panel.show_shared(models.model, models.description)
        self._refresh_layers()

    @property
    def model(self) -> Any:
        """The model shared by the viewer's docks."""
        return self.context.models.model

    @property
    def worker(self) -> Any:
        return self.runner.worker

    def set_model(self, model, description: str = "") -> None:
        """Use ``model`` in every dock of this viewer."""
        self.context.models.set_model(model, description)

    def _on_shared_model(self, model, description: str) -> None:
        self.model_panel.show_shared(model, description)

    # -- layers -------------------------------------------------------------------
    def _refresh_layers(self, event: Any = None, prefer: bool = False) -> None:
        """Refill the layer combos; ``prefer``: select the case's own layers."""
        images = [lyr.name for lyr in self.viewer.layers if isinstance(lyr, Image)]
        labels = [lyr.name for lyr in self.viewer.layers if isinstance(lyr, Labels)]
        preferred = {"image": IMAGE_NAME, "reference": OBJECTS_NAME if OBJECTS_NAME in labels else GT_NAME,
                     "gt": GT_NAME}
        self.layers_panel.refill(images, labels, preferred, prefer)

    def _on_removed(self, event: Any) -> None:
        if self._job_image is not None and event.value is self._job_image:
            self.runner.cancel(f"its image layer '{event.value.name}' was deleted")
        self._refresh_layers()

    def _replace(self, data, meta: dict, layer_type: str):
        if meta["name"] in self.viewer.layers:
            self.viewer.layers.remove(meta["name"])
        return getattr(self.viewer, f"add_{layer_type}")(data, **meta)

    def load_case(self, path: str | Path, kind: CaseKind = CaseKind.LAYER_SEQUENCE, case: str | None = None) -> None:
        """Load a layer-sequence folder or the projections of an OCTA-500 case into layers."""
        kind = CaseKind(kind)
        path = Path(path)
        if kind is CaseKind.LAYER_SEQUENCE:
            seq = ds.read_layer_sequence(path)
            self._replace(seq.images, {"name": IMAGE_NAME}, "image")
            self._replace(seq.masks.astype(np.uint8), {"name": GT_NAME}, "labels")
            if seq.objects is not None:
                self._replace(seq.objects, {"name": OBJECTS_NAME}, "labels")
            elif OBJECTS_NAME in self.viewer.layers:
                self.viewer.layers.remove(OBJECTS_NAME)
            self.params.set("task", OctaTask(seq.task))
            self.layer_names = seq.layer_names
            self.params.set("reference_layer", len(seq) // 2)
        else:
            case = case or next(iter(ds.list_cases(path)), None)
            if case is None:
                raise FileNotFoundError(f"no projection cases under {path}")
            proj = ds.read_projections(path, case)
            self._replace(proj.images, {"name": IMAGE_NAME}, "image")
            gt = ds.read_ground_truth(path, case, "FAZ" if self.params.task is OctaTask.FAZ else "LargeVessel")
            self._replace(gt.astype(np.uint8), {"name": GT_NAME}, "labels")
            self.layer_names = [f"{case} fused"]
            self.params.set("reference_layer", 0)
        self.case_kind = kind
        self._refresh_layers(prefer=True)

    def prompts_layer(self):
        """The manual-prompt Points layer (created on first use), made active in add mode."""
        if PROMPTS_NAME not in self.viewer.layers:
            if IMAGE_NAME in self.viewer.layers:
                image = self.viewer.layers[IMAGE_NAME]
            else:
                name = self.layers_panel.image_combo.currentText()
                if name not in self.viewer.layers:
                    raise ValueError("load a case or choose an image layer first")
                image = self.viewer.layers[name]
            layer = make_points_layer(self.viewer, image, PROMPTS_NAME)
            self.connections.add_mouse_callback(layer, layer, install_polarity_callback(
                layer, self.manual_panel.negative_check.isChecked, self.manual_panel.object_spin.value,
                install=False))
            self.connections.connect(layer, layer.events.data, lambda _: recolor_points(
                layer, lambda o: object_color(self._result_labels(), o)))
        layer = self.viewer.layers[PROMPTS_NAME]
        self._update_point_defaults(layer=layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        return layer

    def _result_labels(self):
        return _find(self.viewer, f"OCTA {self.params.task.value.upper()}")

    def _update_point_defaults(self, *_: Any, layer=None) -> None:
        layer = layer or _find(self.viewer, PROMPTS_NAME)
        if layer is not None:
            layer.feature_defaults = {"obj_id": self.manual_panel.object_spin.value(),
                                      "positive": not self.manual_panel.negative_check.isChecked()}

    def _clicks(self, n_layers: int) -> list[tuple]:
        if PROMPTS_NAME not in self.viewer.layers or not len(self.viewer.layers[PROMPTS_NAME].data):
            raise ValueError("add points to the 'OCTA prompts' layer first (Click prompts)")
        layer = self.viewer.layers[PROMPTS_NAME]
        data = np.asarray(layer.data)
        rows = data[:, -3:] if data.shape[1] >= 3 else np.column_stack([np.zeros(len(data)), data])
        feats = layer.features
        return [(int(o), int(round(r[0])), float(r[1]), float(r[2]), int(bool(p)))
                for r, o, p in zip(rows, feats["obj_id"], feats["positive"])]

    # -- running --------------------------------------------------------------------
    def _job_args(self) -> tuple:
        if self.model is None:
            raise ValueError("load a model first")
        image_name = self.layers_panel.image_combo.currentText()
        if image_name not in self.viewer.layers:
            raise ValueError("load a case or choose an image layer")
        images = np.asarray(self.viewer.layers[image_name].data)
        images = images[None] if images.ndim == 2 else images
        if images.ndim != 3:
            raise ValueError(f"the image layer must be (L, H, W), got shape {images.shape}")
        projection = self.case_kind is CaseKind.PROJECTIONS
        mode, ref_layer = self.params.mode, int(self.params.value("reference_layer"))
        reference, clicks = None, None
        if mode is PromptMode.AUTOMATIC and not 0 <= ref_layer < len(images):
            raise ValueError(f"reference layer {ref_layer} is outside 0..{len(images) - 1}")
        if mode is PromptMode.MANUAL:
            clicks = self._clicks(len(images))
        else:
            name = self.layers_panel.reference_combo.currentText()
            if name not in self.viewer.layers:
                raise ValueError("choose a reference Labels layer for automatic prompts")
            ref = np.asarray(self.viewer.layers[name].data)
            reference = ref[ref_layer] if ref.ndim == 3 else ref
        gt = None
        if (gt_name := self.layers_panel.ground_truth()) is not None:
            gt = np.asarray(self.viewer.layers[gt_name].data) > 0
            gt = gt[None] if gt.ndim == 2 else gt
            if projection:  # one 2D ground truth for the three projections
                gt = gt[:1] if mode is PromptMode.AUTOMATIC else np.repeat(gt[:1], len(images), axis=0)
        config = OctaConfig(task=self.params.task.value, prompts=PromptConfig(
            n_pos=self.params.value("positives"), n_neg=self.params.value("negatives"),
            seed=self.params.value("seed")))
        names = self.layer_names if gt is not None and len(self.layer_names) == len(gt) else None
        return (self.model, images, mode, projection, reference, ref_layer, clicks, config, gt,
                names or [str(i) for i in range(0 if gt is None else len(gt))])

    def run(self) -> None:
        """Start the OCTA job (no-op while one runs)."""
        if self.runner.busy or self._closed:
            return
        try:
            args = self._job_args()
        except (ValueError, FileNotFoundError, KeyError) as exc:
            show_error(f"OCTA: {exc}")
            return
        self._job_image = self.viewer.layers[self.layers_panel.image_combo.currentText()]
        self.runner.start(_octa_job, *args, on_end=self._on_end)

    def cancel(self) -> None:
        """Stop after the layer in flight; no layer is added."""
        self.runner.cancel()

    def _on_end(self, end: JobEnd) -> None:
        self.last_end, self._job_image = end, None
        if end.outcome is Outcome.DONE:
            layers, rows = end.value
            for data, meta, layer_type in layers:
                self._replace(data, meta, layer_type)
            self.last_rows = rows
            self.show_metrics(rows or [])
        elif end.outcome is Outcome.CANCELLED:
            show_info(f"OCTA: {end.reason} after {end.done or 0} of {end.total or '?'} layers; no layer was added")
        else:
            show_error(f"OCTA: {end.describe_error()}")

    def show_metrics(self, rows: list[dict]) -> None:
        """Fill the metrics table (one row per layer plus 'overall'), as tall as its rows."""
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(str(row["layer"])))
            for j, key in enumerate(METRIC_NAMES, start=1):
                self.table.setItem(i, j, QTableWidgetItem(f"{row[key]:.4f}"))
        self._fit_table()

    def _fit_table(self) -> None:
        rows = max(self.table.rowCount(), 1)
        height = self.table.horizontalHeader().sizeHint().height() + rows * self.table.verticalHeader().defaultSectionSize()
        self.table.setFixedHeight(height + 2 * self.table.frameWidth() + 2)

    def _load_clicked(self) -> None:
        try:
            self.load_case(self.case_panel.path_edit.text().strip(), self.case_panel.kind(),
                           self.case_panel.case_edit.text().strip() or None)
        except (ValueError, FileNotFoundError) as exc:
            show_error(f"OCTA: {exc}")

    def teardown(self) -> None:
        """Cancel the job and disconnect from the viewer (the dock was closed)."""
        self._closed = True
        self.runner.cancel("the dock was closed")
        self.model_panel.cancel()
        self.connections.release_all()
        self.context.models.release(self)
