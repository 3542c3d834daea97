"""Model choice and loading: name, image size, device, checkpoint (cached / download / file).

Loading and downloading run in the shared job runner; the panel emits
``model_loaded(model, description)`` on the main thread when a model is ready
(the dock hands it to the viewer's :class:`~.viewer_context.ModelManager`, so
every dock uses the same model).
Random weights are a developer option only: the checkbox is hidden unless
``$SAM2MED_DEV=1`` or the "Developer" expander is opened, and it is never chosen by default.

The model preselected is :func:`napari_sam2med.sam2.defaults.default_model`: the first official
model whose checkpoint is cached, else the small model shipped with the plugin (no download);
the panel says which and why, describes the chosen model in one line and opens its model card.
With ``engine_choice=True`` (the segment dock) it also offers the image-encoder engine of the
session (``engine.encoders.EngineKind``: torch, onnx, auto, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qtpy.QtCore import QUrl, Signal
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._worker import JobEnd, JobRunner, Outcome

IMAGE_SIZES = (1024, 512, 256)
DEVICES = ("auto", "cpu", "cuda", "mps")
DEV_ENV = "SAM2MED_DEV"


@dataclass(frozen=True)
class ModelChoice:
    """What the user asked for; ``checkpoint`` None means the cached official file."""

    name: str
    image_size: int
    device: str
    checkpoint: Path | None = None
    random_init: bool = False

    def describe(self) -> str:
        from ..sam2.defaults import shipped_models

        weights = "RANDOM weights (developer option)" if self.random_init else (
            self.checkpoint.name if self.checkpoint else
            "shipped weights" if self.name in shipped_models() else "official weights")
        return f"{self.name} @ {self.image_size} px, {self.device}, {weights}"


def cached_checkpoint(name: str) -> Path | None:
    """The registered weights of ``name`` on this machine (the cache, or shipped in the package), or None."""
    from ..sam2.defaults import local_weights

    try:
        return local_weights(name)
    except ValueError:  # not a registered model
        return None


def engine_kinds() -> list[str]:
    """The image-encoder engines a session takes (``engine.encoders.EngineKind``, in its order)."""
    from ..engine.encoders import EngineKind

    return [kind.value for kind in EngineKind]


def load_choice(choice: ModelChoice):
    """Build the model a :class:`ModelChoice` describes (runs in a worker thread)."""
    from ..sam2 import load_model

    if not choice.random_init and choice.checkpoint is None and cached_checkpoint(choice.name) is None:
        raise FileNotFoundError(
            f"no weights for {choice.name}: press 'Download' or 'Choose file...' first"
        )
    return load_model(
        choice.name, image_size=choice.image_size, checkpoint=choice.checkpoint,
        random_init=choice.random_init, device=choice.device, offline=True, progress=False,
    )


def _download(name: str) -> Path:
    from ..sam2 import checkpoint

    return checkpoint.fetch_checkpoint(name, progress=False, offline=False)


class ModelPanel(QGroupBox):
    """The "Model" box of the segmentation widget."""

    model_loaded = Signal(object, str)
    message = Signal(str)

    def __init__(self, parent: QWidget | None = None, engine_choice: bool = False) -> None:
        super().__init__("Model", parent)
        from ..sam2 import MODEL_NAMES
        from ..sam2.checkpoint import offline_requested
        from ..sam2.defaults import DefaultModel, default_model

        self.runner = JobRunner(parent=self)
        self._checkpoint_file: Path | None = None
        #: the model offered when the panel opens, and why (``sam2.defaults.DefaultModel``)
        try:
            self.default = default_model(offline=offline_requested())
        except RuntimeError as err:  # nothing cached, nothing shipped: offer the first model, never random weights
            self.default = DefaultModel(MODEL_NAMES[0], f"{err}: press Download or choose a file", "", shipped=False)
        self.name_combo = QComboBox()
        self.name_combo.addItems(list(MODEL_NAMES))
        self.about_label = QLabel()  # one line: what the chosen model is
        self.about_label.setWordWrap(True)
        self.card_button = QPushButton("Model card")
        self.card_button.setToolTip("Open the chosen model's card: its data, recipe, accuracy and limits")
        advice = " For Meta's official weights pick sam2.1-tiny and press Download." if self.default.shipped else ""
        self.default_note = QLabel(f"<i>Preselected: {self.default.reason}.{advice}</i>")
        self.default_note.setWordWrap(True)
        self.default_note.setVisible(self.default.shipped or cached_checkpoint(self.default.name) is None)
        self.engine_combo = QComboBox()  # the Session's image-encoder engine (segment dock only)
        self.engine_combo.setToolTip(
            "Inference engine of the session: torch (default); the others run the model exported once per "
            "model and size on the CPU (falling back to torch, with a message, when they cannot); auto keeps "
            "the fastest on the first slice")
        if engine_choice:
            self.engine_combo.addItems(engine_kinds())
        self.size_combo = QComboBox()
        self.size_combo.addItems([str(s) for s in IMAGE_SIZES])
        self.size_combo.setToolTip("Input size of the network: smaller is faster, coarser")
        self.speed_hint = QLabel()
        self.speed_hint.setWordWrap(True)
        self.speed_hint.setVisible(False)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.weights_label = QLabel()
        self.weights_label.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.browse_button = QPushButton("Choose file...")
        self.load_button = QPushButton("Load model")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        self.status = QLabel("No model loaded")
        self.status.setWordWrap(True)

        self.dev_toggle = QPushButton("Developer \u25b8")
        self.dev_toggle.setCheckable(True)
        self.dev_toggle.setFlat(True)
        self.random_init = QCheckBox("Random weights (developer option: masks are meaningless)")
        dev_mode = os.environ.get(DEV_ENV, "") == "1"
        self.random_init.setVisible(dev_mode)
        self.dev_toggle.setChecked(dev_mode)
        self.dev_toggle.toggled.connect(self._on_dev_toggled)

        form = QFormLayout()
        form.addRow("Model", self.name_combo)
        form.addRow("", self.about_label)
        form.addRow("", self.default_note)
        form.addRow("Image size", self.size_combo)
        form.addRow("", self.speed_hint)
        form.addRow("Device", self.device_combo)
        if engine_choice:
            form.addRow("Engine", self.engine_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.browse_button)
        buttons.addWidget(self.card_button)
        form.addRow("Weights", self.weights_label)
        form.addRow("", buttons)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.dev_toggle)
        layout.addWidget(self.random_init)
        layout.addWidget(self.load_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        self.name_combo.currentTextChanged.connect(self._on_name_changed)
        self.card_button.clicked.connect(self.open_card)
        self.download_button.clicked.connect(self.download)
        self.browse_button.clicked.connect(self._browse)
        self.load_button.clicked.connect(self.load)
        self.random_init.toggled.connect(lambda _: self.refresh_weights())
        self.device_combo.currentTextChanged.connect(lambda _: self.update_speed_hint())
        self.size_combo.currentTextChanged.connect(lambda _: self.update_speed_hint())
        self.set_choice(name=self.default.name)
        self._on_name_changed()
        self.update_speed_hint()

    # -- state ------------------------------------------------------------------
    def choice(self) -> ModelChoice:
        return ModelChoice(
            name=self.name_combo.currentText(),
            image_size=int(self.size_combo.currentText()),
            device=self.device_combo.currentText(),
            checkpoint=self._checkpoint_file,
            random_init=self.random_init.isChecked(),
        )

    def set_choice(self, name: str | None = None, image_size: int | None = None,
                   device: str | None = None, random_init: bool | None = None) -> None:
        """Set fields programmatically (scripts and tests). Unknown model names are added."""
        if name is not None:
            if self.name_combo.findText(name) < 0:
                self.name_combo.addItem(name)
            self.name_combo.setCurrentText(name)
        if image_size is not None:
            if self.size_combo.findText(str(image_size)) < 0:
                self.size_combo.addItem(str(image_size))
            self.size_combo.setCurrentText(str(image_size))
        if device is not None:
            self.device_combo.setCurrentText(device)
        if random_init is not None:
            self.random_init.setChecked(random_init)

    def engine(self) -> str:
        """The chosen image-encoder engine (an ``EngineKind`` value; ``"torch"`` without the engine choice)."""
        return self.engine_combo.currentText() or "torch"

    def card(self) -> str:
        """Where the chosen model's card is (a file path or a URL; empty if it has none)."""
        from ..sam2.defaults import card_location

        try:
            return card_location(self.name_combo.currentText())
        except ValueError:
            return ""

    def open_card(self) -> bool:
        """Open the chosen model's card (browser or file viewer); returns whether one was opened."""
        card = self.card()
        if not card:
            return False
        url = QUrl(card) if card.startswith(("http://", "https://")) else QUrl.fromLocalFile(card)
        return bool(QDesktopServices.openUrl(url))

    def add_checkpoint(self, name: str, path) -> None:
        """Choose the weights file ``path`` of model ``name`` (e.g. a fine-tuned run's ``best.pt``)."""
        self.set_choice(name=name)  # before the file: a model change forgets the chosen file
        self._checkpoint_file = Path(path)
        self.refresh_weights()

    def refresh_weights(self) -> None:
        choice = self.choice()
        if choice.random_init:
            text = "<b>random weights</b> (developer option)"
        elif choice.checkpoint is not None:
            text = f"file: {choice.checkpoint.name}"
        elif (path := cached_checkpoint(choice.name)) is not None:
            from ..sam2.defaults import shipped_models

            text = (f"shipped with the plugin: {path.name}" if choice.name in shipped_models()
                    else f"cached: {path.name}")
        else:
            text = "<b>no weights found</b>: press Download (needs internet) or choose a file"
        self.weights_label.setText(text)

    def busy(self) -> bool:
        return self.runner.busy

    def cancel(self) -> None:
        """Drop a load or download in flight (its result is ignored)."""
        self.runner.cancel("the dock was closed")

    def update_speed_hint(self) -> None:
        """Warn when 1024 px runs on a CPU: every new slice then takes seconds."""
        device = self.device_combo.currentText()
        if device == "auto":
            from ..sam2.device import pick_device

            device = str(pick_device("auto"))
        slow = device == "cpu" and int(self.size_combo.currentText()) >= 1024
        self.speed_hint.setText(
            "<i>1024 px on a CPU: each new slice takes several seconds (about 16x the work of 256 px). "
            "512 or 256 px is much faster.</i>" if slow else "")
        self.speed_hint.setVisible(slow)

    def show_shared(self, model, description: str) -> None:
        """Show the model another dock (or this one) set for the viewer."""
        self.status.setText(f"Ready: {description}" if model is not None else "No model loaded")

    # -- actions ------------------------------------------------------------------
    def _on_dev_toggled(self, on: bool) -> None:
        self.random_init.setVisible(on)
        self.dev_toggle.setText("Developer \u25be" if on else "Developer \u25b8")
        if not on:
            self.random_init.setChecked(False)

    def _on_name_changed(self, *_) -> None:
        """A new model: forget a chosen file, show what it is, offer its own input size."""
        from ..sam2 import get_config
        from ..sam2.defaults import shipped_models

        self._checkpoint_file = None
        name = self.name_combo.currentText()
        try:
            cfg = get_config(name)
        except ValueError:  # a name added by set_choice that the registry does not know
            self.about_label.setText("")
        else:
            origin = "shipped with the plugin, no download" if name in shipped_models() else "downloaded once"
            self.about_label.setText(f"{cfg.summary or name} ({origin})")
            self.set_choice(image_size=cfg.image_size)
        self.card_button.setEnabled(bool(self.card()))
        self.download_button.setEnabled(name not in shipped_models())
        self.refresh_weights()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM2 checkpoint", "", "PyTorch checkpoint (*.pt *.pth);;All files (*)")
        if path:
            self._checkpoint_file = Path(path)
            self.refresh_weights()

    def _run(self, func, arg, on_done, what: str) -> None:
        if self.runner.busy:
            self.message.emit("the model panel is busy; wait for it to finish")
            return

        def on_end(end: JobEnd) -> None:
            self._on_finished()
            if end.outcome is Outcome.DONE:
                on_done(end.value)
            elif end.outcome is Outcome.FAILED:
                self._on_error(end.error)

        self.progress.setVisible(True)
        self.status.setText(what)
        for button in (self.load_button, self.download_button, self.browse_button):
            button.setEnabled(False)
        self.runner.start(func, arg, on_end=on_end)

    def download(self) -> None:
        self._run(_download, self.choice().name, self._on_downloaded,
                  f"Downloading {self.choice().name} weights...")

    def load(self) -> None:
        choice = self.choice()
        self._pending = choice
        self._run(load_choice, choice, self._on_loaded, f"Loading {choice.describe()}...")

    def _on_downloaded(self, path) -> None:
        self.status.setText(f"Downloaded {Path(path).name}")
        self.refresh_weights()

    def _on_loaded(self, model) -> None:
        text = self._pending.describe()
        self.status.setText(f"Ready: {text}")
        self.model_loaded.emit(model, text)

    def _on_error(self, exc: BaseException) -> None:
        self.status.setText(f"<b>Error:</b> {exc}")
        self.message.emit(str(exc))

    def _on_finished(self) -> None:
        self.progress.setVisible(False)
        for button in (self.load_button, self.download_button, self.browse_button):
            button.setEnabled(True)
        from ..sam2.defaults import shipped_models

        self.download_button.setEnabled(self.name_combo.currentText() not in shipped_models())
