"""Open napari, segment the synthetic sample volume and save a screenshot of the widget at work.

Everything goes through the user's path: File > Open Sample (the volume and its hidden ground
truth), the segment dock from the Plugins menu, the model its panel preselects (the first
official SAM2 checkpoint in the cache, else ``sam2med-small-ct``, the small model shipped with the
plugin; never random weights), a box drawn around each object on its largest slice (the prompt
that model was trained with), Propagate, and the dock's "Compare with a reference" box, which
scores each object against the ground truth. The model used and the Dice are printed and shown
in the window title.

Run headless: ``xvfb-run -a .venv/bin/python examples/propagate_sample.py``
Writes ``docs/screenshot.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAMES = {1: "organ", 2: "bright lesion", 3: "dark lesion"}


def _wait(condition, timeout=600.0) -> None:
    from qtpy.QtWidgets import QApplication

    start = time.perf_counter()
    while not condition():
        QApplication.processEvents()
        time.sleep(0.005)
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the widget did not finish in time")


def _settle(seconds: float) -> None:
    end = time.perf_counter() + seconds
    _wait(lambda: time.perf_counter() > end)


def load_default_model(widget) -> str:
    """Load the model the dock's panel preselects (as a user pressing 'Load model'); returns its description."""
    panel = widget.model_panel
    assert not panel.choice().random_init
    panel.load()
    _wait(lambda: not panel.busy())
    if widget.model is None:
        sys.exit(f"model did not load: {panel.status.text()}")
    return panel.choice().describe()


def box_prompts(widget, truth: np.ndarray, ids=(1, 2, 3)) -> int:
    """Draw a box around each ground-truth object on its largest slice, one object each; returns a slice shown."""
    shapes = widget.state.shapes_layer
    for obj_id in ids:
        if obj_id > 1:
            widget.new_object()
        z = int((truth == obj_id).sum(axis=(1, 2)).argmax())
        widget.viewer.dims.set_current_step(0, z)
        rows, cols = np.nonzero(truth[z] == obj_id)
        r0, c0, r1, c1 = rows.min(), cols.min(), rows.max(), cols.max()
        shapes.feature_defaults = {"obj_id": obj_id}
        shapes.add_rectangles([np.array([[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]], float)])
        _wait(lambda: not widget.is_busy())
        widget.rename_object(obj_id, NAMES.get(obj_id, f"object {obj_id}"))
    return z


def main(out: Path = REPO / "docs" / "screenshot.png") -> None:
    import napari
    import torch
    from qtpy.QtWidgets import QScrollArea

    from napari_sam2med._sample_data import synthetic_volume

    torch.set_num_threads(2)
    _, truth = synthetic_volume()
    viewer = napari.Viewer(title="napari-sam2med: synthetic sample")
    viewer.open_sample("napari-sam2med", "synthetic_volume")  # File > Open Sample: image + hidden ground truth
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2med", "SAM2 segment & propagate")
    widget.setMinimumWidth(500)
    viewer.window.resize(1600, 1000)
    described = load_default_model(widget)
    box_prompts(widget, truth)

    start = time.perf_counter()
    if widget.propagate() is None:
        sys.exit(f"propagation did not start: {widget.status.text()}")
    _wait(lambda: not widget.is_busy())
    took = time.perf_counter() - start
    mid = truth.shape[0] // 2
    viewer.dims.set_current_step(0, mid)
    rows = widget.reference_panel.compute() or []  # the dock's Dice against the sample's ground truth
    dice = ", ".join(f"{NAMES.get(r.obj_id, r.obj_id)} {r.dice:.2f}" for r in rows)
    print(f"propagated {truth.shape[0]} slices in {took:.1f} s with {described}")
    print(f"Dice vs the sample's ground truth (whole volume): {dice}")
    viewer.title = f"napari-sam2med: {described}; Dice {dice}"

    viewer.layers.selection.active = widget.state.labels_layer
    viewer.reset_view()
    _settle(1.0)  # let the dock lay out the Dice table, then scroll it into view
    scroll = widget.findChild(QScrollArea)
    if scroll is not None:
        scroll.ensureWidgetVisible(widget.reference_panel, 0, 10)
    _settle(0.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"screenshot: {out}")
    viewer.close()


if __name__ == "__main__":
    main()
