"""The Flow dock's "Adapt to this video" panel: real button clicks, progress, live loss, Cancel."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from napari_sam2med._qt._worker import Outcome  # noqa: E402
from napari_sam2med._qt.flow_adapt_panel import FlowAdaptPanel  # noqa: E402

TINY = dict(match_dim=32, context_dim=32, hidden_dim=32, memory_dim=32, roi_dim=32, hiera_embed_dim=8, iters=1)


@pytest.fixture
def dock(make_napari_viewer, tmp_path):
    import torch

    from napari_sam2med.flow.estimators.sam2flow import save_flow_weights
    from napari_sam2med.flow.net.model import SAM2Flow, SAM2FlowConfig
    from napari_sam2med.flow.synthetic import SyntheticConfig, make_video, prompts_for

    torch.manual_seed(0)
    save_flow_weights(SAM2Flow(SAM2FlowConfig(**TINY)), tmp_path / "start.pt")
    video = make_video(SyntheticConfig(height=40, width=40, n_frames=4, seed=7))
    viewer = make_napari_viewer()
    viewer.add_image(video.frames, name="video")
    _, flow = viewer.window.add_plugin_dock_widget("napari-sam2med", "SAM2Flow")
    panel = next((p for p in flow.findChildren(FlowAdaptPanel)), None)
    if panel is None:  # until the dock hosts it itself
        panel = FlowAdaptPanel(flow)
        flow.add_panel(panel)
    layer = flow.prompts_layer()
    for roi in prompts_for(video):
        flow.video_panel.roi_spin.setValue(roi.id)
        for point, label in zip(roi.points, roi.labels):
            flow.video_panel.negative_check.setChecked(bool(label == 0))
            layer.add(point)
    flow.method_panel.set_method("sam2flow")
    flow.method_panel.weights_edit.setText(str(tmp_path / "start.pt"))
    return flow, panel, tmp_path


def test_adapt_button_saves_and_selects_the_weights(dock, qtbot):
    flow, panel, tmp_path = dock
    panel.steps_spin.setValue(2)
    panel.out_edit.setText(str(tmp_path / "adapted.pt"))
    panel.adapt_btn.click()
    qtbot.waitUntil(lambda: panel.last_end is not None, timeout=120_000)
    assert panel.last_end.outcome is Outcome.DONE, panel.last_end.describe_error()
    assert panel.last_end.steps == 2 and (tmp_path / "adapted.pt").is_file()
    assert flow.method_panel.weights_edit.text() == str(tmp_path / "adapted.pt")
    assert "saved adapted.pt" in panel.loss_label.text() and "loss" in panel.loss_label.text()


def test_cancel_stops_and_saves_nothing(dock, qtbot):
    flow, panel, tmp_path = dock
    panel.steps_spin.setValue(5000)
    panel.out_edit.setText(str(tmp_path / "never.pt"))
    panel.adapt_btn.click()
    qtbot.waitUntil(lambda: panel.loss_label.text().startswith("step"), timeout=120_000)
    assert not panel.adapt_btn.isEnabled() and panel.cancel_btn.isEnabled()
    panel.cancel_btn.click()
    qtbot.waitUntil(lambda: panel.last_end is not None, timeout=120_000)
    assert panel.last_end.outcome is Outcome.CANCELLED
    assert not (tmp_path / "never.pt").exists() and "nothing saved" in panel.loss_label.text()
    assert flow.method_panel.weights_edit.text() == str(tmp_path / "start.pt")
