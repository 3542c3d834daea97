"""The "Project" box of the segment dock: save / open an annotation folder, and autosave.

:class:`ProjectPanel` is plain Qt; :class:`ProjectActions` (mixed into the
segment dock) does the work with :mod:`.project_io`. Autosave writes the
current image's annotation to its project folder every ``autosave_minutes``
(only once a folder was chosen with Save or Open), atomically, so a crash
loses at most those minutes of work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from .project_io import apply_project, load_project, save_project


class ProjectPanel(QGroupBox):
    """Save / Open buttons, the autosave switch and where the project lives."""

    def __init__(self, autosave_minutes: float = 3.0) -> None:
        super().__init__("Project")
        self.save_button = QPushButton("Save project...")
        self.save_button.setToolTip("Save labels, prompts and objects of this image as a folder (zarr + JSON)")
        self.open_button = QPushButton("Open project...")
        self.autosave_check = QCheckBox(f"autosave every {autosave_minutes:g} min")
        self.autosave_check.setChecked(True)
        self.folder_label = QLabel("not saved yet")
        self.folder_label.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.autosave_check)
        layout.addWidget(self.folder_label)
        self.timer = QTimer(self)
        self.timer.setInterval(int(autosave_minutes * 60_000))

    def ask_folder(self, title: str) -> Path | None:
        path = QFileDialog.getExistingDirectory(self, title) if "Open" in title else \
            QFileDialog.getSaveFileName(self, title, "annotation.sam2med")[0]
        return Path(path) if path else None


class ProjectActions:
    """Save, open and autosave for the segment dock (``self.project_panel``, ``self.state``, ...)."""

    def _connect_project(self) -> None:
        p = self.project_panel
        p.save_button.clicked.connect(lambda: self.save_project(p.ask_folder("Save project as")))
        p.open_button.clicked.connect(lambda: self.open_project(p.ask_folder("Open project folder")))
        p.timer.timeout.connect(self.autosave)
        p.timer.start()

    def save_project(self, folder: str | Path | None = None) -> Path | None:
        """Save the current image's annotation to ``folder`` (default: its project folder)."""
        ann = self.state
        folder = Path(folder) if folder else ann.project_folder
        if folder is None:
            return None
        try:
            path = save_project(folder, ann)
        except (ValueError, OSError) as err:
            self.show_error(f"could not save the project: {err}")
            return None
        ann.project_folder = path
        self.project_panel.folder_label.setText(f"saved to {path}")
        return path

    def open_project(self, folder: str | Path | None) -> bool:
        """Load a project folder into the current image's layers (labels, prompts, objects)."""
        from .segment_layers import make_layer

        if folder is None:
            return False
        ann = self.state
        if ann.image_layer is None:
            self.show_error("open the project's image first, then open the project onto it")
            return False
        self._ensure_layers(ann)
        try:
            data = load_project(folder)
            self._syncing = True  # the prompts arrive with their labels: nothing is re-segmented
            try:
                apply_project(ann, data, lambda: make_layer(self.viewer, ann.image_layer, "committed"))
            finally:
                self._syncing = False
        except (ValueError, OSError, KeyError) as err:
            self.show_error(f"could not open the project: {err}")
            return False
        ann.shown = None
        ann.project_folder = Path(folder)
        self.project_panel.folder_label.setText(f"opened {folder}")
        self.show_info(f"Opened project '{Path(folder).name}': {len(data.objects) or 'no'} named objects, "
                       f"{len(data.points)} points, {len(data.boxes)} boxes.", ann)
        self.objects_changed()
        return True

    def autosave(self) -> None:
        """Save every annotation that has a project folder (called by the timer)."""
        if not self.project_panel.autosave_check.isChecked() or self._closed:
            return
        for ann in list(self.context.annotations.values()):
            if ann.project_folder is not None and ann.labels_layer is not None:
                try:
                    save_project(ann.project_folder, ann)
                except (ValueError, OSError) as err:
                    self.show_error(f"autosave failed: {err}")
                    return
        self.project_panel.folder_label.setText(
            self.project_panel.folder_label.text().split(" (autosaved")[0] + " (autosaved)")

    def _stop_autosave(self) -> Any:
        self.project_panel.timer.stop()
