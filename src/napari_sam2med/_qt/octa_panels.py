"""Sub-widgets of the OCTA dock: the case loader, the layer choices and the parameter form.

(No ``from __future__ import annotations``: magicgui reads the real annotation types.)

The parameters are a magicgui form with ``persist=True`` (values come back in the
next session, as in stardist-napari) and a Restore-defaults button.
"""


import inspect
from enum import Enum

from magicgui import magicgui
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

NONE = "(none)"


class CaseKind(Enum):
    """What a case folder holds."""

    LAYER_SEQUENCE = "layer sequence"
    PROJECTIONS = "projections"


class OctaTask(Enum):
    """What to segment: retinal vessels or the foveal avascular zone."""

    RV = "rv"
    FAZ = "faz"


class PromptMode(Enum):
    """Where the prompt points come from."""

    AUTOMATIC = "automatic prompts"  # drawn from a reference Labels layer on one layer
    MANUAL = "manual prompts"  # the user's clicks in the OCTA prompts layer


class CasePanel(QGroupBox):
    """Path, kind and case id, and a Load button."""

    def __init__(self) -> None:
        super().__init__("Case")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("layer-sequence folder or OCTA-500 root")
        self.browse_btn = QPushButton("...")
        self.browse_btn.clicked.connect(self._browse)
        self.kind_combo = QComboBox()
        for kind in CaseKind:
            self.kind_combo.addItem(kind.value, kind)
        self.case_edit = QLineEdit()
        self.case_edit.setPlaceholderText("case id (projections; empty = the only one)")
        self.load_btn = QPushButton("Load case")
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(self.browse_btn)
        form = QFormLayout(self)
        form.addRow("Path", row)
        form.addRow("Kind", self.kind_combo)
        form.addRow("Case", self.case_edit)
        form.addRow(self.load_btn)

    def kind(self) -> CaseKind:
        return self.kind_combo.currentData()

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "OCTA case folder")
        if path:
            self.path_edit.setText(path)


class LayersPanel(QGroupBox):
    """Which layers a run reads: image, reference labels (automatic prompts), ground truth."""

    def __init__(self) -> None:
        super().__init__("Layers")
        self.image_combo, self.reference_combo, self.gt_combo = QComboBox(), QComboBox(), QComboBox()
        form = QFormLayout(self)
        form.addRow("Image", self.image_combo)
        form.addRow("Reference", self.reference_combo)
        form.addRow("Ground truth", self.gt_combo)

    def refill(self, images: list[str], labels: list[str], preferred: dict[str, str], prefer: bool) -> None:
        """Refill the combos; keep each choice unless ``prefer`` (then pick ``preferred``)."""
        for key, combo, names in (("image", self.image_combo, images),
                                  ("reference", self.reference_combo, labels),
                                  ("gt", self.gt_combo, [NONE, *labels])):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            keep = current if current in names and current != NONE and not prefer else preferred.get(key, "")
            if keep in names:
                combo.setCurrentText(keep)
            combo.blockSignals(False)

    def ground_truth(self) -> str | None:
        name = self.gt_combo.currentText()
        return None if name in ("", NONE) else name


FORM_OPTIONS = {
    "reference_layer": {"min": 0, "max": 10_000, "tooltip": "the layer whose reference labels give the prompts"},
    "positives": {"min": 1, "max": 50, "label": "positives / object"},
    "negatives": {"min": 0, "max": 50, "label": "negatives / object"},
    "seed": {"min": 0, "max": 1_000_000},
}


def octa_parameters(task: OctaTask = OctaTask.RV, prompts: PromptMode = PromptMode.AUTOMATIC,
                    reference_layer: int = 0, positives: int = 3, negatives: int = 3, seed: int = 0) -> None:
    """The OCTA dock's run parameters (a form; calling it does nothing)."""


class ParametersPanel(QGroupBox):
    """The persisted parameter form and its Restore-defaults button."""

    def __init__(self) -> None:
        super().__init__("Parameters")
        # one form per dock; its values persist on disk (magicgui's cache folder)
        self.form = magicgui(octa_parameters, persist=True, auto_call=False, call_button=False, **FORM_OPTIONS)
        self.restore_btn = QPushButton("Restore defaults")
        self.restore_btn.clicked.connect(self.restore_defaults)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.form.native)
        layout.addWidget(self.restore_btn)

    def restore_defaults(self) -> None:
        """Set every parameter back to its default (persisted like any change, after magicgui's debounce)."""
        self.form.update({name: p.default for name, p in inspect.signature(octa_parameters).parameters.items()})

    @property
    def task(self) -> OctaTask:
        return self.form.task.value

    @property
    def mode(self) -> PromptMode:
        return self.form.prompts.value

    def value(self, name: str):
        return getattr(self.form, name).value

    def set(self, name: str, value) -> None:
        getattr(self.form, name).value = value


class ManualPromptPanel(QGroupBox):
    """Object id and polarity of the next manual click, and the button that starts clicking."""

    def __init__(self) -> None:
        from qtpy.QtWidgets import QCheckBox, QSpinBox

        super().__init__("Manual prompts")
        self.object_spin = QSpinBox()
        self.object_spin.setRange(1, 999)
        self.object_spin.setToolTip("The object the next clicks belong to")
        self.negative_check = QCheckBox("negative click")
        self.negative_check.setToolTip("Plain clicks add negative points (Shift/Alt+click: the other polarity)")
        self.prompt_btn = QPushButton("Click prompts")
        self.prompt_btn.setToolTip("Select the OCTA prompts layer in add mode: click on a vessel")
        row = QHBoxLayout(self)
        row.addWidget(self.object_spin)
        row.addWidget(self.negative_check)
        row.addWidget(self.prompt_btn)
