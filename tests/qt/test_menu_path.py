"""Every dock the manifest declares opens the way the Plugins menu opens it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _declared_widgets() -> list[str]:
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(REPO / "napari.yaml")
    return [w.display_name for w in manifest.contributions.widgets]


def test_manifest_declares_the_docks():
    names = _declared_widgets()
    assert {"SAM2 segment & propagate", "SAM2Flow", "OCTA (SAM-OCTA2)"} <= set(names)


@pytest.mark.parametrize("name", _declared_widgets())
def test_every_declared_widget_opens_from_the_plugins_menu(make_napari_viewer, name):
    from qtpy.QtWidgets import QWidget

    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-sam2med", name)
    assert isinstance(widget, QWidget) and dock.widget() is widget
    # napari injects the viewer only into a parameter named napari_viewer (or typed Viewer)
    assert "napari_viewer" in inspect.signature(type(widget).__init__).parameters
    # the widget talks to this viewer, not a proxy of another
    assert getattr(widget, "viewer", viewer) is viewer or widget.viewer.__wrapped__ is viewer
    # opening twice gives the same dock (napari keeps one per name)
    assert viewer.window.add_plugin_dock_widget("napari-sam2med", name)[1] is widget
