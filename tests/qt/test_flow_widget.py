"""FlowWidget headless: prompts, a tvl1 run through the worker, cancel, errors."""

import numpy as np
import pytest
from scipy import ndimage as ndi

pytest.importorskip("napari")

from napari_sam2med._qt._worker import Outcome  # noqa: E402
from napari_sam2med._qt.flow_widget import PROMPTS_NAME, FlowWidget, prompts_from_points  # noqa: E402
from napari_sam2med._qt.prompt_layers import NEGATIVE_COLOR, POSITIVE_COLOR, _rgba  # noqa: E402


def _video(n=6, shape=(48, 48)):
    rng = np.random.default_rng(5)
    base = ndi.gaussian_filter(rng.random(shape), 2.0)
    base = (base - base.min()) / (base.max() - base.min())
    return np.stack([ndi.shift(base, (1.0 * t, 0.0), order=3, mode="wrap") for t in range(n)]).astype(np.float32)


@pytest.fixture
def widget(make_napari_viewer, helpers):
    viewer = make_napari_viewer()
    viewer.add_image(_video(), name="video")
    viewer.add_image(np.zeros((8, 8)), name="flat2d")  # not offered (2-D)
    w = helpers.open_dock(viewer, "SAM2Flow")
    assert isinstance(w, FlowWidget)
    from napari_sam2med._qt.flow_adapt_panel import FlowAdaptPanel

    assert w.findChildren(FlowAdaptPanel) == [w.adapt_panel]  # the dock hosts "Adapt to this video"
    return viewer, w


def _add_prompts(w):
    layer = w.prompts_layer()
    v = w.video_panel
    v.roi_spin.setValue(2)
    layer.add([24.0, 24.0])
    v.negative_check.setChecked(True)
    layer.add([4.0, 4.0])
    v.negative_check.setChecked(False)
    v.roi_spin.setValue(5)
    layer.add([40.0, 10.0])
    return layer


def test_prompts_layer_and_features(widget):
    viewer, w = widget
    combo = w.video_panel.video_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["video"]
    layer = _add_prompts(w)
    assert layer.name == PROMPTS_NAME and w.prompts_layer() is layer
    assert viewer.layers.selection.active is layer and layer.mode == "add"  # a click adds a point
    assert list(layer.features["roi_id"]) == [2, 2, 5]
    assert list(layer.features["label"]) == [1, 0, 1]
    np.testing.assert_allclose(layer.face_color[0], _rgba(POSITIVE_COLOR))
    np.testing.assert_allclose(layer.face_color[1], _rgba(NEGATIVE_COLOR))
    assert [str(s) for s in layer.symbol] == ["disc", "cross", "disc"]  # polarity not only by colour
    rois = prompts_from_points(layer)
    assert [r.id for r in rois] == [2, 5]
    np.testing.assert_allclose(rois[0].points, [[24, 24], [4, 4]])
    assert list(rois[0].labels) == [1, 0]


def test_run_tvl1_to_completion(widget, qtbot):
    viewer, w = widget
    _add_prompts(w)
    w.method_panel.set_method("tvl1")
    w.method_panel.pixel_spin.setValue(0.5)
    w.method_panel.fps_spin.setValue(10.0)
    w.run()
    assert w.worker is not None and not w.run_btn.isEnabled()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    vec = viewer.layers["SAM2Flow tvl1 vectors"]
    speed = viewer.layers["SAM2Flow tvl1 speed (µm/s)"]
    assert vec.data.ndim == 3 and vec.data.shape[1:] == (2, 3)
    assert len(vec.data) > 0 and set(np.unique(vec.data[:, 0, 0])) <= set(range(5))
    assert speed.data.shape == (5, 48, 48) and speed.data.dtype == np.float32
    assert w.progress.value() == 5 and w.run_btn.isEnabled()
    result = w.last_result
    assert result.roi_ids == [2, 5] and result.mean_speed_um_s.shape == (5, 2)
    # the texture moves 1 px/frame -> ~5 µm/s at 0.5 µm/px and 10 fps
    assert np.nanmedian(speed.data[:, 12:36, 12:36]) == pytest.approx(5.0, rel=0.2)
    assert w.plot is not None and len(w.plot.axes.lines) == 2
    # a second run replaces (not duplicates) the layers
    n_layers = len(viewer.layers)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert len(viewer.layers) == n_layers


def test_cancel_adds_no_layers(widget, qtbot):
    viewer, w = widget
    viewer.layers["video"].data = np.repeat(_video(), 10, axis=0)  # 60 frames
    _add_prompts(w)
    w.method_panel.set_method("ilk")
    before = {lyr.name for lyr in viewer.layers}
    w.run()
    w.cancel_btn.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert {lyr.name for lyr in viewer.layers} == before
    assert w.last_result is None and w.run_btn.isEnabled()
    # cancelled, not crashed: a failing job would also add no layers
    assert w.last_end.outcome is Outcome.CANCELLED and w.last_end.reason == "cancelled by the user"
    assert w.progress.value() < 59  # the bar shows what was done, not 100 %


def test_deleting_the_video_stops_the_job(widget, qtbot):
    viewer, w = widget
    viewer.layers["video"].data = np.repeat(_video(), 10, axis=0)
    _add_prompts(w)
    w.method_panel.set_method("ilk")
    before = {lyr.name for lyr in viewer.layers} - {"video"}
    w.run()
    viewer.layers.remove("video")
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert w.last_end.outcome is Outcome.CANCELLED and "video layer 'video' was deleted" in w.last_end.reason
    assert {lyr.name for lyr in viewer.layers} == before


def test_errors_are_reported_not_raised(widget, monkeypatch):
    viewer, w = widget
    errors = []
    monkeypatch.setattr("napari_sam2med._qt.flow_widget.show_error", errors.append)
    w.run()  # no prompts yet
    assert errors and "prompt" in errors[-1] and w.worker is None
    layer = w.prompts_layer()
    w.video_panel.negative_check.setChecked(True)
    layer.add([10.0, 10.0])
    w.run()  # only a negative point
    assert "positive" in errors[-1]
    w.method_panel.pixel_spin.setValue(1.0)
    w.video_panel.negative_check.setChecked(False)
    layer.add([20.0, 20.0])
    w.run()
    assert "frame rate" in errors[-1] and w.worker is None


def test_failed_layer_add_leaves_no_half_result(widget, qtbot, monkeypatch):
    viewer, w = widget
    _add_prompts(w)
    w.method_panel.set_method("tvl1")  # the fastest estimator: the test is about the layers
    errors = []
    monkeypatch.setattr("napari_sam2med._qt.flow_widget.show_error", errors.append)

    def broken_add_image(*args, **kwargs):
        raise RuntimeError("no GPU memory")

    before = {lyr.name for lyr in viewer.layers}
    monkeypatch.setattr(type(viewer), "add_image", broken_add_image)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert {lyr.name for lyr in viewer.layers} == before  # the vectors layer was rolled back
    assert errors and "no GPU memory" in errors[-1] and w.last_result is None


def test_frame_span_reaches_the_estimator(widget, qtbot, monkeypatch):
    """The dock's "frame span" is `sam2med flow --span`: refused for a classical method, passed to sam2flow."""
    from napari_sam2med._qt import flow_widget
    from napari_sam2med.flow.estimators.classical import TVL1Estimator

    viewer, w = widget
    _add_prompts(w)
    errors, made = [], []
    monkeypatch.setattr(flow_widget, "show_error", errors.append)
    w.method_panel.set_method("tvl1")
    w.method_panel.span_spin.setValue(3)
    w.run()
    assert errors and "frame span applies to sam2flow only" in errors[-1] and w.worker is None
    assert [layer.name for layer in viewer.layers] == ["video", "flat2d", PROMPTS_NAME]  # nothing added

    def fake(method, weights=None, device="auto", span=1):  # record what the dock asks for; run tvl1 (fast)
        made.append((method, span))
        return TVL1Estimator()

    monkeypatch.setattr(flow_widget, "make_estimator", fake)
    w.method_panel.set_method("sam2flow")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert made == [("sam2flow", 3)] and len(errors) == 1
    w.method_panel.span_spin.setValue(1)
    assert w.method_panel.span_spin.text() == "1 (off)"
