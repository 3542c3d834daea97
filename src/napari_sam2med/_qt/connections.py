"""Book-keeping of everything a dock widget hooks into the viewer, so closing it undoes all of it.

A closed dock must not keep answering viewer events, key presses or clicks on
its old layers (napari-animation's ``closeEvent`` does the same by hand). Every
connection goes through one :class:`Connections` object; :meth:`Connections.release`
(per layer) and :meth:`Connections.release_all` (on close) undo them, and
restore any key binding that was overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Connections:
    """Event connections, key bindings and mouse callbacks owned by one widget.

    Each entry remembers its *owner* (a layer, or the viewer) so the hooks of a
    layer that leaves the widget can be released alone.
    """

    events: list[tuple[Any, Any, Callable]] = field(default_factory=list)
    keys: list[tuple[Any, Any, str, Callable, Any]] = field(default_factory=list)
    mouse: list[tuple[Any, Any, Callable]] = field(default_factory=list)

    def connect(self, owner: Any, emitter: Any, callback: Callable) -> None:
        """``emitter.connect(callback)``, remembered under ``owner``."""
        emitter.connect(callback)
        self.events.append((owner, emitter, callback))

    def bind_key(self, owner: Any, target: Any, key: str, func: Callable) -> None:
        """Bind ``key`` on ``target`` (viewer or layer); the binding it replaced comes back on release."""
        previous = target.bind_key(key, func, overwrite=True)
        self.keys.append((owner, target, key, func, previous))

    def add_mouse_callback(self, owner: Any, layer: Any, callback: Callable, first: bool = True) -> None:
        """Add a mouse-drag callback (first in the list: it runs before the layer mode's own)."""
        if first:
            layer.mouse_drag_callbacks.insert(0, callback)
        else:
            layer.mouse_drag_callbacks.append(callback)
        self.mouse.append((owner, layer, callback))

    def release(self, owner: Any) -> None:
        """Undo every hook remembered under ``owner``."""
        self._release(lambda o: o is owner)

    def release_all(self) -> None:
        """Undo every hook."""
        self._release(lambda o: True)

    def _release(self, match: Callable[[Any], bool]) -> None:
        for entry in [e for e in self.events if match(e[0])]:
            _, emitter, callback = entry
            try:
                emitter.disconnect(callback)
            except (TypeError, ValueError, RuntimeError):  # already gone with its layer
                pass
            self.events.remove(entry)
        for entry in reversed([e for e in self.keys if match(e[0])]):
            _, target, key, func, previous = entry
            current = target.keymap.get(_coerce(key))
            if current is func:  # someone else may have rebound it since: leave theirs
                target.bind_key(key, previous, overwrite=True)
            self.keys.remove(entry)
        for entry in [e for e in self.mouse if match(e[0])]:
            _, layer, callback = entry
            if callback in layer.mouse_drag_callbacks:
                layer.mouse_drag_callbacks.remove(callback)
            self.mouse.remove(entry)


def _coerce(key: str) -> Any:
    from napari.utils.key_bindings import coerce_keybinding

    return coerce_keybinding(key)


class DockLifecycle:
    """Mixed into a dock ``QWidget``: calls ``teardown()`` once when the dock goes away.

    napari's close button takes the widget out of its dock (``setParent(None)``)
    without closing it, so the parent change is the signal; ``closeEvent`` covers a
    plain ``close()``. The widget sets ``_docked = False`` and ``_closed = False``
    and implements ``teardown()``.
    """

    _docked: bool = False
    _closed: bool = False

    def event(self, event: Any) -> bool:
        from qtpy.QtCore import QEvent

        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked and not self._closed:
                self.teardown()
        return super().event(event)

    def closeEvent(self, event: Any) -> None:
        if not self._closed:
            self.teardown()
        super().closeEvent(event)

    def teardown(self) -> None:  # pragma: no cover - every dock overrides it
        raise NotImplementedError
