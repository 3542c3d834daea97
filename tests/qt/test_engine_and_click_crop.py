"""The segment dock's engine setting reaches its Session (issue 15), and a click runs in the crop window of a
crop-trained model (issue 18) through the dock, the way a user clicks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

oracle = pytest.importorskip("oracle")


def test_engine_choices_come_from_the_engine_enum(seg):
    from napari_sam2med.engine.encoders import EngineKind

    _, widget = seg
    combo = widget.model_panel.engine_combo
    assert [combo.itemText(i) for i in range(combo.count())] == [k.value for k in EngineKind]
    assert widget.model_panel.engine() == "torch"


def test_engine_setting_reaches_the_session(seg, qtbot, helpers, monkeypatch):
    from napari_sam2med.engine import session as session_module
    from napari_sam2med.engine.encoders import EngineKind, TorchEncoder

    built = []

    def make_encoder(model, kind, **_):  # record the engine the session asks for (no ONNX export in a test)
        built.append(EngineKind.parse(kind))
        return TorchEncoder(model)

    monkeypatch.setattr(session_module, "make_encoder", make_encoder)
    _, widget = seg
    widget.model_panel.engine_combo.setCurrentText("auto")
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    assert widget.state.session.engine is EngineKind.AUTO and built == [EngineKind.AUTO]
    assert widget.status.text().startswith("Segmented slice 6")
    widget.model_panel.engine_combo.setCurrentText("onnx")  # a new choice: the next click gets a new session
    helpers.click(widget, 6, 34, 28)
    helpers.wait_idle(qtbot, widget)
    assert widget.state.session.engine is EngineKind.ONNX and built[-1] is EngineKind.ONNX


def test_click_in_the_dock_is_segmented_in_the_crop_window(make_napari_viewer, qtbot, helpers, volume):
    from napari_sam2med.engine import Session
    from napari_sam2med.engine.crop import window_from_box

    model = oracle.perturbed_test_model(seed=3)
    model.config = replace(model.config, crop_context=3.0)  # trained on crops, as sam2med-small-ct
    viewer = make_napari_viewer()
    image, _ = volume
    viewer.add_image(image, name="vol", contrast_limits=(-160, 240))
    widget = helpers.open_dock(viewer, "SAM2 segment & propagate")
    widget.set_model(model, "perturbed sam2.1-test, crop context 3")
    viewer.dims.set_current_step(0, 6)
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    session = widget.state.session
    win = window_from_box([30, 24, 30, 24], 3.0, 32, (64, 64))
    assert list(session._crop_sessions) == [win]  # the click's window (32 px, the smallest) was encoded
    got = np.asarray(widget.state.labels_layer.data[6]) == 1
    crop = Session(model, session.stack)
    crop.add_points(1, 6, [[30, 24]], [1])
    np.testing.assert_array_equal(got, crop.segment_slice(6).masks[1])
    outside = np.ones(got.shape, bool)
    outside[win[0]:win[0] + win[2], win[1]:win[1] + win[2]] = False
    assert got.any() and not got[outside].any()
    whole = Session(model, session.stack, crop_context=0)  # what the dock did before: the whole slice
    whole.add_points(1, 6, [[30, 24]], [1])
    assert not np.array_equal(got, whole.segment_slice(6).masks[1])
