"""Background precompute of the segment dock: the slices around the one shown are encoded while the user looks.

:class:`PrecomputePanel` holds the settings (on/off, memory budget, disk cache and its folder)
and drives :func:`~napari_sam2med.engine.precompute.precompute` in its own
:class:`~._worker.JobRunner`, separate from the dock's segment and propagation runners:

* it starts once the user has stayed on a slice for :attr:`PrecomputePanel.dwell_ms` (scrolling
  through a stack encodes nothing), on the current image's session (built as a click would);
* it pauses between slices while a click is segmented or a propagation runs, and starts over
  from the slice shown when they end; moving to another slice or image stops it;
* a click or a propagation that needs another slice stops the encode in flight (nothing of it is
  cached; it is encoded again later), so the click's decoder has the CPU to itself; a click on a slice
  it is encoding waits for that encode instead of starting another
  (:class:`~napari_sam2med.engine.embedding_cache.EmbeddingCache`, :mod:`~napari_sam2med.engine.preempt`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from ..engine.embedding_cache import MB, EmbeddingCache, attach_cache
from ..engine.embedding_store import EmbeddingStore, default_store_dir
from ..engine.precompute import precompute
from ._worker import JobEnd, JobRunner
from .segment_layers import layers_ready
from .stack_geometry import stack_axis_choices

__all__ = ["PrecomputePanel"]


def _segments_crops(model: Any) -> bool:
    """Whether a click segments a crop around the prompt (``config.crop_context``): whole-slice embeddings
    would not be used."""
    return bool(getattr(getattr(model, "config", None), "crop_context", None))


def _precompute_job(cache: EmbeddingCache, center: int, n: int, paused, cancelled):
    return (yield from precompute(cache, center, n, paused=paused, cancelled=cancelled))


class PrecomputePanel(QGroupBox):
    """Precompute settings and the background job (see the module docstring).

    Parameters
    ----------
    dock : SegmentWidget
        The segment dock: its ``viewer``, ``state``, ``model``, ``current_slice``, ``_ensure_session``,
        ``is_busy``, runners, panels and ``connections`` are used.
    """

    #: Milliseconds on one slice before the neighbours are encoded.
    dwell_ms = 300

    def __init__(self, dock: Any, parent: QWidget | None = None) -> None:
        super().__init__("Precompute nearby slices", parent)
        self.dock = dock
        self.enabled = QCheckBox("encode the slices around the one shown")
        self.enabled.setChecked(True)
        self.enabled.setToolTip("While you look at a slice, its image embedding and its neighbours' are computed "
                                "in the background, so a click there costs only the mask decoder.")
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setDecimals(1)
        self.budget_spin.setRange(0.1, 1 << 20)
        self.budget_spin.setSingleStep(256)
        self.budget_spin.setValue(1024)
        self.budget_spin.setSuffix(" MB")
        self.budget_spin.setToolTip("Memory for cached embeddings (SAM2.1-tiny: ~20 MB per slice at 1024 px).")
        self.disk_check = QCheckBox("keep embeddings on disk")
        self.disk_check.setToolTip("Reopening the same data with the same model then encodes nothing. "
                                   "Entries are checked on every read; a bad one is computed again.")
        self.folder_edit = QLineEdit(str(default_store_dir()))
        self.browse_button = QPushButton("...")
        self.browse_button.setMaximumWidth(32)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        folder = QHBoxLayout()
        folder.addWidget(self.folder_edit)
        folder.addWidget(self.browse_button)
        form = QFormLayout(self)
        form.addRow(self.enabled)
        form.addRow("Memory budget", self.budget_spin)
        form.addRow(self.disk_check)
        form.addRow("Disk folder", folder)
        form.addRow(self.status)

        self.runner = JobRunner(parent=self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.start)
        self._stop = threading.Event()
        self._store: EmbeddingStore | None = None
        self._closed = False
        self.last = None  # the last run's PrecomputeSummary (tests, status)

        self.enabled.toggled.connect(self.schedule)
        self.budget_spin.valueChanged.connect(self._budget_changed)
        self.disk_check.toggled.connect(self.schedule)
        self.folder_edit.editingFinished.connect(self.schedule)
        self.browse_button.clicked.connect(self._browse)
        c, viewer = dock.connections, dock.viewer
        c.connect(viewer, viewer.dims.events.current_step, self.schedule)
        c.connect(viewer, dock.context.models.changed, self.schedule)
        dock.image_panel.image_combo.currentIndexChanged.connect(self.schedule)
        for runner in (dock.segment_runner, dock.propagation_runner):
            runner.ended.connect(self.schedule)  # resume after a click or a propagation

    # -- control --------------------------------------------------------------------
    def schedule(self, *_: Any) -> None:
        """Stop the running precompute and start again after the dwell time (the user may have moved)."""
        if self._closed:
            return
        self._stop.set()
        if self.enabled.isChecked():
            self._timer.start(self.dwell_ms)
        else:
            self._timer.stop()
            self.status.setText("")

    def _paused(self) -> bool:  # read in the worker thread between slices
        d = self.dock
        return d.segment_runner.busy or d.propagation_runner.busy

    def start(self) -> Any:
        """Start precomputing around the current slice now; returns the worker, or None when not possible."""
        d = self.dock
        if self._closed or not self.enabled.isChecked():
            return None
        if self.runner.busy:  # the previous run is finishing its slice: start when it has ended
            self._timer.start(self.dwell_ms)
            return None
        image = d.image_panel.current_image()
        if d.model is None or image is None or d.viewer.dims.ndisplay != 2 or d.is_busy():
            return None
        try:
            stack_axis_choices(image.data.shape, image.rgb)  # not a stack: the dock has said so already
        except ValueError:
            return None
        if d.state.image_layer is not image or not layers_ready(d.viewer, d.state):
            return None  # layers the user deleted come back on a click, never from a background job
        if _segments_crops(d.model):
            self.status.setText("not used: this model segments a crop around each prompt, not whole slices")
            return None
        if not d._ensure_session():
            return None
        store = self._disk_store()
        if self.disk_check.isChecked() and store is None:
            return None
        session = d.state.session
        cache = attach_cache(session, self.budget_spin.value(), store)
        center = d.current_slice()
        self._stop = stop = threading.Event()
        return self.runner.start(_precompute_job, cache, center, session.num_slices, self._paused, stop.is_set,
                                 on_step=lambda step: self._show(cache, step.done, step.total),
                                 on_end=lambda end: self._ended(cache, end))

    def _disk_store(self) -> EmbeddingStore | None:
        if not self.disk_check.isChecked():
            return None
        folder = self.folder_edit.text().strip() or str(default_store_dir())
        if self._store is None or self._store.folder != Path(folder).expanduser():
            try:
                self._store = EmbeddingStore(folder)
            except ValueError as err:
                self.disk_check.setChecked(False)
                self.dock.show_error(str(err))
                return None
        return self._store

    def _budget_changed(self, value: float) -> None:
        session = self.dock.state.session
        if session is not None and isinstance(session.features, EmbeddingCache):
            session.features.set_budget(int(value * MB))
        self.schedule()

    def _show(self, cache: EmbeddingCache, done: int, total: int) -> None:
        self.status.setText(f"{done} of {total} slices ready ({cache.nbytes / MB:.0f} of "
                            f"{cache.budget_bytes / MB:.0f} MB)")

    def _ended(self, cache: EmbeddingCache, end: JobEnd) -> None:
        if end.error is not None:
            self.status.setText(f"precompute stopped: {end.describe_error()}")
            return
        self.last = end.value
        if self.last is not None and not self.last.cancelled:
            self.status.setText(f"{len(self.last.ready)} slices ready around slice {self.last.center} "
                                f"({cache.nbytes / MB:.0f} of {cache.budget_bytes / MB:.0f} MB)")

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Embedding cache folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self.schedule()

    def teardown(self) -> None:
        """Stop the timer and the job (the slice in flight finishes; nothing more is started)."""
        self._closed = True
        self._timer.stop()
        self._stop.set()
        self.runner.cancel("the dock was closed")
