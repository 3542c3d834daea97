"""State shared by the docks of one viewer: the model manager and the per-image annotations.

There is no module-level singleton: each napari viewer gets one
:class:`ViewerContext`, found with :func:`context_for` and forgotten when the
viewer is garbage collected. A dock that is closed and reopened finds the
same model and the same per-image annotation state (layers, prompts, undo
history) through it.
"""

from __future__ import annotations

import weakref
from typing import Any

from qtpy.QtCore import QObject, Signal

__all__ = ["ModelManager", "ViewerContext", "context_for", "unwrap_viewer"]


class ModelManager(QObject):
    """One loaded model shared by every dock of a viewer.

    Docks :meth:`acquire` it while they are open and :meth:`release` it when
    they close. When the last user goes, the model (and, on CUDA, its cached
    memory) is freed after ``grace_s`` seconds, unless a dock acquires it again
    first: closing and reopening a dock keeps the model.

    Signals
    -------
    changed(model, description)
        A model was set (``None`` when it was freed).
    """

    changed = Signal(object, str)
    #: (model name, checkpoint path): a fine-tuned checkpoint to offer in every model panel
    checkpoint_offered = Signal(str, object)

    def __init__(self, grace_s: float = 120.0) -> None:
        from qtpy.QtCore import QTimer

        super().__init__()
        self.model: Any = None
        self.description = ""
        self.grace_s = grace_s
        self._users: set[int] = set()
        self.checkpoints: list[tuple[str, Any]] = []  # offered so far (panels opened later show them)
        self._free_timer = QTimer(self)
        self._free_timer.setSingleShot(True)
        self._free_timer.timeout.connect(self._free_if_unused)

    def set_model(self, model: Any, description: str = "") -> None:
        """Use ``model`` in every dock from now on."""
        self.model, self.description = model, description
        self.changed.emit(model, description)

    def offer_checkpoint(self, name: str, path: Any) -> None:
        """Offer ``path`` (weights of model ``name``, e.g. a fine-tuned ``best.pt``) to every model panel."""
        self.checkpoints.append((name, path))
        self.checkpoint_offered.emit(name, path)

    def acquire(self, user: object) -> None:
        """Register ``user`` (a dock) as using the model."""
        self._users.add(id(user))
        self._free_timer.stop()

    def release(self, user: object) -> None:
        """Unregister ``user``; the model is freed ``grace_s`` after the last user went."""
        self._users.discard(id(user))
        if not self._users and self.model is not None:
            self._free_timer.start(int(1000 * self.grace_s))

    def _free_if_unused(self) -> None:
        if not self._users and self.model is not None:
            device = getattr(self.model, "device", None)
            self.model, self.description = None, ""
            self.changed.emit(None, "")
            if str(device).startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    @property
    def n_users(self) -> int:
        return len(self._users)


class ViewerContext:
    """Everything the plugin keeps per viewer.

    Attributes
    ----------
    models : ModelManager
        The shared model.
    annotations : dict
        ``image layer unique_id -> ImageAnnotation`` (see :mod:`.segment_state`).
    """

    def __init__(self) -> None:
        self.models = ModelManager()
        self.annotations: dict[Any, Any] = {}
        # sessions hold the model: a new (or freed) model ends them, even with every dock closed
        self.models.changed.connect(self._end_sessions)

    def _end_sessions(self, *_: Any) -> None:
        for ann in self.annotations.values():
            ann.reset_session()


_CONTEXTS: "weakref.WeakKeyDictionary[Any, ViewerContext]" = weakref.WeakKeyDictionary()


def unwrap_viewer(viewer: Any) -> Any:
    """The viewer behind napari's ``PublicOnlyProxy`` (the proxy wraps every layer it
    returns, so identity checks between event payloads and ``viewer.layers`` would fail)."""
    return getattr(viewer, "__wrapped__", viewer)


def context_for(viewer: Any) -> ViewerContext:
    """The :class:`ViewerContext` of ``viewer`` (created on first use)."""
    viewer = unwrap_viewer(viewer)
    context = _CONTEXTS.get(viewer)
    if context is None:
        context = _CONTEXTS[viewer] = ViewerContext()
    return context
