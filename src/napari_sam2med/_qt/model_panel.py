"""Model choice and loading: name, image size, device, checkpoint (cached / download / file).

Loading and downloading run in the shared job runner; the panel emits
``model_loaded(model, description)`` on the main thread when a model is ready
(the dock hands it to the viewer's :class:`~.viewer_context.ModelManager`, so
every dock uses the same model).
Random weights are a developer option only: the checkbox is hidden unless
``$SAM2MED_DEV=1`` or the "Developer" expander is opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from qtpy.QtCore import Signal
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
        weights = "RANDOM weights" if self.random_init else (
            self.checkpoint.name if self.checkpoint else "official weights")
        return f"{self.name} @ {self.image_size} px, {self.device}, {weights}"


def cached_checkpoint(name: str) -> Path | None:
    """The official checkpoint of ``name`` in the local cache, or None."""
    from ..sam2 import checkpoint

    try:
        path = checkpoint.cache_dir() / checkpoint.get_spec(name).filename
    except (ValueError, KeyError):
        return None
    return path if path.is_file() else None


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

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        from ..sam2 import MODEL_NAMES

        self.runner = JobRunner(parent=self)
        self._checkpoint_file: Path | None = None
        self.name_combo = QComboBox()
        self.name_combo.addItems(list(MODEL_NAMES))
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
        self.random_init = QCheckBox("Random weights (testing only: masks are meaningless)")
        dev_mode = os.environ.get(DEV_ENV, "") == "1"
        self.random_init.setVisible(dev_mode)
        self.dev_toggle.setChecked(dev_mode)
        self.dev_toggle.toggled.connect(self._on_dev_toggled)

        form = QFormLayout()
        form.addRow("Model", self.name_combo)
        form.addRow("Image size", self.size_combo)
        form.addRow("", self.speed_hint)
        form.addRow("Device", self.device_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.browse_button)
        form.addRow("Weights", self.weights_label)
        form.addRow("", buttons)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.dev_toggle)
        layout.addWidget(self.random_init)
        layout.addWidget(self.load_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        self.name_combo.currentTextChanged.connect(self._forget_file)
        self.download_button.clicked.connect(self.download)
        self.browse_button.clicked.connect(self._browse)
        self.load_button.clicked.connect(self.load)
        self.random_init.toggled.connect(lambda _: self.refresh_weights())
        self.device_combo.currentTextChanged.connect(lambda _: self.update_speed_hint())
        self.size_combo.currentTextChanged.connect(lambda _: self.update_speed_hint())
        self.refresh_weights()
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
            text = f"cached: {path.name}"
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

    def _forget_file(self, *_) -> None:
        self._checkpoint_file = None
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
