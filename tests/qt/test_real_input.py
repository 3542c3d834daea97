"""Real mouse clicks and key presses on napari's canvas (QTest events, as a user makes them)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest


def _canvas_point(viewer, row, col):
    """Canvas pixel of the data point (row, col) of the first layer, in the 2D view."""
    canvas = viewer.window._qt_viewer.canvas
    layer = viewer.layers[0]
    world_r, world_c = np.asarray(layer.scale[-2:]) * (row, col) + np.asarray(layer.translate[-2:])
    x, y = canvas.view.scene.transform.map([world_c, world_r, 0, 1])[:2]
    ratio = canvas.native.devicePixelRatioF()
    return canvas.native, QPoint(int(round(x / ratio)), int(round(y / ratio)))


def test_mouse_clicks_and_keys_on_the_canvas(seg, qtbot, helpers):
    viewer, widget = seg
    viewer.window.show()
    viewer.reset_view()
    qtbot.wait(100)
    widget.prompt_panel.points_button.click()  # points layer active, add mode
    assert viewer.layers.selection.active is widget.state.points_layer
    native, pos = _canvas_point(viewer, 30, 24)
    QTest.mouseClick(native, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    native, pos = _canvas_point(viewer, 12, 12)
    QTest.mouseClick(native, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, pos)
    helpers.wait_idle(qtbot, widget)
    layer = widget.state.points_layer
    assert layer.features["positive"].tolist() == [True, False]  # Shift+click is negative
    np.testing.assert_allclose(layer.data[0], [6, 30, 24], atol=0.6)
    prompt = widget.state.session.prompts.get(1, 6)
    assert prompt.labels.tolist() == [1, 0]
    assert widget.state.history.undo_stack  # the slice was segmented and written
    # a real key press on the canvas: N (new object), then T (toggle polarity)
    QTest.keyClick(native, Qt.Key.Key_N)
    assert widget.current_object() == 2
    QTest.keyClick(native, Qt.Key.Key_T)
    assert widget.prompt_panel.negative_button.isChecked()
