"""The segment dock's axis selector (issue 16): segment and propagate a 3D volume along coronal slices."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

SEGMENT = "SAM2 segment & propagate"
WINDOW = (0.0, 200.0)


def _bar_volume():
    """(14, 40, 36) volume with a bar that is long along y (coronal slices cut it lengthwise)."""
    rng = np.random.default_rng(0)
    vol = rng.normal(40, 8, (14, 40, 36)).astype(np.float32)
    z, y, x = np.ogrid[:14, :40, :36]
    vol[((z - 7) / 3.0) ** 2 + ((x - 18) / 5.0) ** 2 + ((y - 20) / 16.0) ** 2 <= 1] = 160
    return vol


@pytest.fixture
def axis_dock(make_napari_viewer, tiny_model):
    viewer = make_napari_viewer()
    image = viewer.add_image(_bar_volume(), name="bar", contrast_limits=WINDOW)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2med", SEGMENT)
    widget.set_model(tiny_model, "sam2.1-test @ 128 (random weights)")
    return viewer, widget, image


def test_coronal_propagation_writes_labels_in_layer_order(axis_dock, qtbot, helpers):
    from napari_sam2med.engine import Session, run_to_end
    from napari_sam2med.io import FrameStack
    from napari_sam2med.io.axes import Axis

    viewer, widget, image = axis_dock
    panel = widget.propagate_panel
    combo = panel.view_axis_combo
    assert combo.isEnabled() and "another axis" in combo.toolTip()
    assert [combo.itemText(i) for i in range(combo.count())] == ["Axial", "Coronal", "Sagittal"]
    assert panel.view_axis() is Axis.AXIAL and tuple(viewer.dims.order) == (0, 1, 2)
    combo.setCurrentIndex(list(Axis).index(Axis.CORONAL))
    assert tuple(viewer.dims.order) == (1, 0, 2)  # the user now sees coronal slices (y steps)
    assert panel.last_spin.maximum() == 39 and "coronal" in widget.status.text()
    viewer.dims.set_current_step(1, 20)
    helpers.click(widget, 7, 20, 18)  # data (z, y, x): on coronal slice y=20, at row z=7, col x=18
    helpers.wait_idle(qtbot, widget)
    qtbot.mouseClick(panel.run_button, Qt.LeftButton)
    helpers.wait_idle(qtbot, widget)
    assert "Propagation done" in widget.status.text(), widget.status.text()
    assert widget.state.session.stack.axis_view.axis is Axis.CORONAL
    labels = np.asarray(widget.state.labels_layer.data)

    stack = FrameStack(np.asarray(image.data), window=WINDOW).along("coronal")
    session = Session(widget.model, stack)
    session.add_points(1, 20, [[7.0, 18.0]], [1])
    expected = stack.axis_view.to_original(run_to_end(session.propagate()))
    assert expected.shape == labels.shape == image.data.shape
    np.testing.assert_array_equal(labels, expected)
    assert (labels == 1).sum() > 0

    # prompts exist: changing the axis is refused and says why; the selection snaps back
    combo.setCurrentIndex(list(Axis).index(Axis.SAGITTAL))
    assert panel.view_axis() is Axis.CORONAL and widget.state.view_axis is Axis.CORONAL
    assert "Axis not changed" in widget.status.text() and "clear" in widget.status.text()
    assert tuple(viewer.dims.order) == (1, 0, 2)


def test_selector_hidden_for_rgb_and_movies(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 16, 16, 3), np.uint8), name="rgb", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2med", SEGMENT)
    combo = widget.propagate_panel.view_axis_combo
    assert not combo.isEnabled()
    viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="movie", axis_labels=("t", "y", "x"))
    widget.image_panel.image_combo.setCurrentIndex(1)
    assert widget.state.image_layer.name == "movie" and not combo.isEnabled()
    viewer.add_image(np.zeros((4, 16, 16), np.uint8), name="vol")
    widget.image_panel.image_combo.setCurrentIndex(2)
    assert widget.state.image_layer.name == "vol" and combo.isEnabled()
