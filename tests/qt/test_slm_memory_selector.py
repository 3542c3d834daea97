"""The segment widget's memory selector (issue 12): SLM-SAM2 memory chosen in the Propagate panel."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from qtpy.QtCore import Qt

SEGMENT = "SAM2 segment & propagate"


@pytest.fixture
def seg_slm(make_napari_viewer, qtbot, tiny_model, volume):
    """Like ``seg`` but with a private copy of the model (choosing SLM adds modules to it)."""
    from napari_sam2med.sam2 import SLMConfig
    from napari_sam2med.sam2.slm import attach_slm

    model = copy.deepcopy(tiny_model)
    attach_slm(model, SLMConfig(short_init_scale=1.0))  # "trained" SLM modules: results differ from SAM2's
    viewer = make_napari_viewer()
    image, _ = volume
    viewer.add_image(image, name="vol", scale=(2.5, 0.8, 0.8), contrast_limits=(-160, 240))
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2med", SEGMENT)
    widget.set_model(model, "sam2.1-test @ 128 (random weights, SLM)")
    viewer.dims.set_current_step(0, 6)
    return viewer, widget


def test_memory_selector_runs_slm_propagation(seg_slm, qtbot, helpers):
    from napari_sam2med.engine import MemoryKind, Session, run_to_end

    _, widget = seg_slm
    panel = widget.propagate_panel
    combo = panel.memory_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["sam2", "slm"]
    tip = combo.toolTip()
    assert "SLM" in tip and "SAM2" in tip and "train" in tip  # says when to use which
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    combo.setCurrentIndex(1)
    qtbot.mouseClick(panel.run_button, Qt.LeftButton)
    helpers.wait_idle(qtbot, widget)
    assert widget.state.session.memory is MemoryKind.SLM
    labels = np.asarray(widget.state.labels_layer.data).copy()
    expected = {}
    for memory in ("slm", "sam2"):
        s = Session(widget.model, widget.state.session.stack, memory=memory)
        s.add_points(1, 6, [[30.0, 24.0]], [1])
        expected[memory] = run_to_end(s.propagate())
    np.testing.assert_array_equal(labels, expected["slm"])
    assert (expected["slm"] != expected["sam2"]).any()  # the choice matters for this model
