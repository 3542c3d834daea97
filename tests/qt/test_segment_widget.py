"""SegmentWidget driven for real: prompts, click-segmentation, objects, layers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2med._qt.prompt_layers import NEGATIVE_COLOR, POSITIVE_COLOR, _rgba


def test_widget_creates_layers_on_image_scale(seg):
    viewer, widget = seg
    state = widget.state
    names = [layer.name for layer in viewer.layers]
    assert names == ["vol", "vol SAM2 labels", "vol SAM2 points", "vol SAM2 boxes"]
    for layer in (state.labels_layer, state.points_layer, state.shapes_layer):
        np.testing.assert_allclose(layer.scale, (2.5, 0.8, 0.8))
    assert state.labels_layer.data.shape == (12, 64, 64)
    assert state.labels_layer.data.dtype == np.int32
    assert widget.propagate_panel.last_spin.maximum() == 11


def test_click_segments_current_slice_only(seg, qtbot, helpers):
    viewer, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    labels = widget.state.labels_layer.data
    assert (labels[6] == 1).sum() > 0
    assert (np.delete(labels, 6, axis=0) == 0).all()
    feats = widget.state.points_layer.features
    assert feats["positive"].tolist() == [True] and feats["obj_id"].tolist() == [1]
    # the result matches the engine's own answer for the same prompt
    expected = widget.state.session.segment_slice(6, [1]).masks[1]
    np.testing.assert_array_equal(labels[6] == 1, expected)


def test_shift_click_is_negative_styled_by_symbol_and_object_colour(seg, qtbot, helpers):
    from napari_sam2med._qt.object_list import object_color

    _, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.click(widget, 6, 10, 10, negative=True)
    helpers.wait_idle(qtbot, widget)
    layer = widget.state.points_layer
    assert layer.features["positive"].tolist() == [True, False]
    # filled with the object's label colour; polarity by rim colour and by symbol
    colour = object_color(widget.state.labels_layer, 1)
    np.testing.assert_allclose(layer.face_color[0], colour, atol=1e-6)
    np.testing.assert_allclose(layer.face_color[1], colour, atol=1e-6)
    np.testing.assert_allclose(layer.border_color[0], _rgba(POSITIVE_COLOR))
    np.testing.assert_allclose(layer.border_color[1], _rgba(NEGATIVE_COLOR))
    assert [str(s) for s in layer.symbol] == ["disc", "cross"]
    prompt = widget.state.session.prompts.get(1, 6)
    assert prompt.labels.tolist() == [1, 0]
    # the toggle flips the meaning of a plain click
    widget.prompt_panel.negative_button.setChecked(True)
    assert "negative" in widget.prompt_panel.mode_label.text()
    helpers.click(widget, 6, 50, 50)
    assert layer.features["positive"].tolist() == [True, False, False]


def test_box_prompt_and_object_sync(seg, qtbot):
    viewer, widget = seg
    widget.prompt_panel.object_spin.setValue(3)
    assert widget.state.labels_layer.selected_label == 3
    widget.state.labels_layer.selected_label = 5
    assert widget.prompt_panel.object_spin.value() == 5
    widget.start_box()
    assert widget.state.shapes_layer.mode == "add_rectangle"
    rect = np.array([[6, 20, 10], [6, 20, 40], [6, 45, 40], [6, 45, 10]], float)
    widget.state.shapes_layer.add_rectangles([rect])
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=20000)
    assert widget.state.shapes_layer.features["obj_id"].tolist() == [5]
    box = widget.state.session.prompts.get(5, 6).box
    np.testing.assert_allclose(box, [20, 10, 45, 40])
    from napari_sam2med._qt.object_list import object_color

    np.testing.assert_allclose(widget.state.shapes_layer.edge_color[0], object_color(widget.state.labels_layer, 5),
                               atol=1e-6)  # boxes are outlined in their object's colour
    assert (widget.state.labels_layer.data[6] == 5).any()
    assert widget.new_object() == 6


def test_deleting_prompts_clears_that_mask(seg, qtbot, helpers):
    _, widget = seg
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    assert (widget.state.labels_layer.data[6] == 1).any()
    layer = widget.state.points_layer
    layer.selected_data = {0}
    layer.remove_selected()
    helpers.wait_idle(qtbot, widget)
    assert not (widget.state.labels_layer.data == 1).any()


def test_label_as_mask_prompt(seg, qtbot):
    _, widget = seg
    widget.state.labels_layer.data[6, 20:40, 20:40] = 1
    widget.use_label_as_mask()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=20000)
    prompt = widget.state.session.prompts.get(1, 6)
    assert prompt.mask is not None and prompt.mask.sum() == 400


@pytest.mark.parametrize("case", ["no image", "2D", "RGB 2D", "no model", "empty prompts", "empty mask"])
def test_bad_inputs_give_messages_not_exceptions(make_napari_viewer, qtbot, tiny_model, volume, case, helpers):
    viewer = make_napari_viewer()
    if case == "2D":
        viewer.add_image(np.zeros((32, 32)), name="flat")
    elif case == "RGB 2D":
        viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo", rgb=True)
    elif case != "no image":
        viewer.add_image(volume[0], name="vol")
    widget = helpers.open_dock(viewer, "SAM2 segment & propagate")
    if case != "no model":
        widget.set_model(tiny_model, "test")
    if case == "empty mask":
        widget.use_label_as_mask()
    else:
        widget.propagate()
    expected = {
        "no image": "no image layer", "2D": "2D image", "RGB 2D": "2D RGB image",
        "no model": "no model loaded", "empty prompts": "no prompts", "empty mask": "has no pixels",
    }[case]
    assert expected in widget.status.text()
    assert not widget.is_busy()
