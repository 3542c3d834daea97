"""Background precompute in the segment dock (opened through the Plugins-menu path): after a dwell on a slice,
a click on a neighbouring slice costs no encoder call; a click or a propagation pauses it; the disk cache
makes a reopened volume encode nothing."""

from __future__ import annotations

from napari_sam2med.engine.embedding_cache import EmbeddingCache
from napari_sam2med.engine.precompute import outward_order


def _dwell(qtbot, widget, slices):
    """Wait (the user looks at the slice) until ``slices`` are encoded in the background."""
    qtbot.waitUntil(lambda: isinstance(getattr(widget.state.session, "features", None), EmbeddingCache)
                    and all(s in widget.state.session.features for s in slices), timeout=60000)
    qtbot.waitUntil(lambda: not widget.precompute_panel.runner.busy, timeout=60000)


def test_dwell_then_click_on_a_neighbour_does_not_encode(seg, qtbot, helpers):
    viewer, widget = seg
    panel = widget.precompute_panel
    panel.budget_spin.setValue(32)  # 128 px sam2.1-test: ~1.2 MB per slice, all 12 slices fit
    _dwell(qtbot, widget, [6, 7, 5])
    cache = widget.state.session.features
    assert cache.encoded == 12 and cache.misses == 0 and panel.last.ready[:3] == [6, 7, 5]
    assert "12 slices ready around slice 6" in panel.status.text()

    viewer.dims.set_current_step(0, 7)  # the user moves to a neighbour and clicks at once
    helpers.click(widget, 7, 30, 24)
    helpers.wait_idle(qtbot, widget)
    assert (widget.state.labels_layer.data[7] == 1).sum() > 0
    assert cache.encoded == 12 and cache.misses == 0 and cache.hits >= 1  # decoder only


def test_off_budget_and_pause_on_click(seg, qtbot, helpers):
    viewer, widget = seg
    panel = widget.precompute_panel
    panel.enabled.setChecked(False)
    helpers.click(widget, 6, 30, 24)  # builds the session; nothing is precomputed while it is off
    helpers.wait_idle(qtbot, widget)
    qtbot.wait(2 * panel.dwell_ms)
    assert not isinstance(widget.state.session.features, EmbeddingCache) and not panel.runner.busy

    panel.budget_spin.setValue(0.3)  # 0.3 MB: 3 slices of this tiny model (80 kB each)
    panel.enabled.setChecked(True)
    _dwell(qtbot, widget, [6])
    cache = widget.state.session.features
    n = int(0.3 * (1 << 20)) // cache.entry_bytes
    assert n == 3 and cache.nbytes <= 0.3 * (1 << 20)
    assert sorted(cache.cached()) == sorted(outward_order(6, 12)[:n])  # the nearest slices, within budget

    helpers.click(widget, 6, 40, 30)  # a click: the precompute waits between slices while it runs
    assert widget.segment_runner.busy and panel._paused()
    helpers.wait_idle(qtbot, widget)
    assert not panel._paused()

    labels = widget.state.labels_layer  # a layer the user deleted never comes back from the background job
    viewer.layers.remove(labels)
    viewer.dims.set_current_step(0, 8)
    qtbot.wait(3 * panel.dwell_ms)
    assert labels not in viewer.layers and widget.state.labels_layer is None and not panel.runner.busy


def test_disk_cache_in_the_dock_reopen_encodes_nothing(make_napari_viewer, qtbot, tiny_model, volume, helpers,
                                                       tmp_path):
    image, _ = volume
    counts = []
    for _ in range(2):  # open the volume, dwell; close everything; open it again
        viewer = make_napari_viewer()
        viewer.add_image(image, name="vol", contrast_limits=(-160, 240))
        widget = helpers.open_dock(viewer, "SAM2 segment & propagate")
        panel = widget.precompute_panel
        panel.folder_edit.setText(str(tmp_path / "emb"))
        panel.disk_check.setChecked(True)
        panel.budget_spin.setValue(32)
        widget.set_model(tiny_model, "sam2.1-test")
        viewer.dims.set_current_step(0, 3)
        _dwell(qtbot, widget, list(range(12)))
        cache = widget.state.session.features
        counts.append((cache.encoded, cache.loaded))
        widget.close()
        viewer.close()
    assert counts == [(12, 0), (0, 12)]
    assert len(list((tmp_path / "emb").rglob("*.zarr"))) == 12
