"""Model panel: developer option, missing weights message, loading in a worker."""

from __future__ import annotations

import numpy as np


def test_random_init_hidden_unless_developer(qtbot, monkeypatch):
    from napari_sam2med._qt.model_panel import ModelPanel

    monkeypatch.delenv("SAM2MED_DEV", raising=False)
    panel = ModelPanel()
    qtbot.addWidget(panel)
    assert panel.random_init.isHidden()
    panel.dev_toggle.setChecked(True)
    assert not panel.random_init.isHidden()
    monkeypatch.setenv("SAM2MED_DEV", "1")
    dev_panel = ModelPanel()
    qtbot.addWidget(dev_panel)
    assert not dev_panel.random_init.isHidden()


def test_missing_weights_is_a_clear_message(qtbot, monkeypatch, tmp_path):
    from napari_sam2med._qt.model_panel import ModelPanel

    monkeypatch.setenv("SAM2MED_CACHE", str(tmp_path))
    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.set_choice(name="sam2.1-tiny")  # (an empty cache preselects the shipped model)
    assert "no weights found" in panel.weights_label.text()
    messages = []
    panel.message.connect(messages.append)
    panel.load()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=10000)
    assert messages and "no weights for sam2.1-tiny" in messages[0]
    assert "Error" in panel.status.text()


def test_widget_loads_random_model_through_worker(seg, qtbot, helpers, monkeypatch):
    viewer, widget = seg
    widget.set_model(None)
    panel = widget.model_panel
    panel.dev_toggle.setChecked(True)
    panel.set_choice(name="sam2.1-test", image_size=128, device="cpu", random_init=True)
    assert "random weights" in panel.weights_label.text()
    with qtbot.waitSignal(panel.model_loaded, timeout=20000):
        panel.load_button.click()
    assert widget.model is not None and widget.model.image_size == 128
    assert "RANDOM weights" in widget.status.text()
    helpers.click(widget, 6, 30, 24)
    helpers.wait_idle(qtbot, widget)
    assert widget.status.text().startswith("Segmented slice 6:")
    expected = widget.state.session.segment_slice(6, [1]).masks[1]  # random weights: compare, not count
    np.testing.assert_array_equal(np.asarray(widget.state.labels_layer.data[6]) == 1, expected)
