"""Fixtures for the napari widget tests: a tiny random-init model and a ready widget."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")


@pytest.fixture(autouse=True)
def _private_magicgui_cache(tmp_path, monkeypatch):
    """Persisted magicgui forms write under the test's own folder, never the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_model():
    """The ``sam2.1-test`` config at 128 px with seeded random weights, on CPU."""
    import torch

    from napari_sam2med.sam2 import load_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return load_model("sam2.1-test", image_size=128, random_init=True, device="cpu", progress=False)


@pytest.fixture
def volume():
    """A small synthetic volume (12 x 64 x 64) and its ground truth."""
    from napari_sam2med._sample_data import synthetic_volume

    return synthetic_volume((12, 64, 64), seed=0)


PLUGIN = "napari-sam2med"
SEGMENT = "SAM2 segment & propagate"
FLOW = "SAM2Flow"
OCTA = "OCTA (SAM-OCTA2)"


def open_dock(viewer, name):
    """Open a dock the way the Plugins menu does; returns the widget napari made."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def wait_idle(qtbot, widget, timeout=20000):
    """Wait until no worker of the widget runs."""
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=timeout)


@pytest.fixture
def seg(make_napari_viewer, qtbot, tiny_model, volume):
    """(viewer, widget) with the synthetic volume shown and the tiny model set, at slice 6."""
    viewer = make_napari_viewer()
    image, _ = volume
    viewer.add_image(image, name="vol", scale=(2.5, 0.8, 0.8), contrast_limits=(-160, 240))
    widget = open_dock(viewer, SEGMENT)
    widget.set_model(tiny_model, "sam2.1-test @ 128 (random weights)")
    viewer.dims.set_current_step(0, 6)
    return viewer, widget


def click(widget, slice_idx, row, col, negative=False):
    """Add a prompt point as a click would (negative via the Shift modifier)."""

    class _Press:
        modifiers = ["Shift"] if negative else []

    layer = widget.state.points_layer
    for callback in list(layer.mouse_drag_callbacks):
        if getattr(callback, "__name__", "") == "on_press":
            callback(layer, _Press())
    layer.add(np.array([[slice_idx, row, col]], float))


@pytest.fixture
def helpers():
    """``helpers.click(widget, z, r, c, negative=False)``, ``helpers.wait_idle(qtbot, widget)``
    and ``helpers.open_dock(viewer, name)``."""
    from types import SimpleNamespace

    return SimpleNamespace(click=click, wait_idle=wait_idle, open_dock=open_dock)
