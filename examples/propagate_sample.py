"""Open napari, segment the synthetic sample volume and save a screenshot of the widget at work.

Uses the widget's own worker path (the same code as clicking "Propagate").
The official ``sam2.1-tiny`` weights are used when cached; otherwise a
randomly initialised model (meaningless masks), which the window title and a
notification say.

Run headless: ``xvfb-run -a .venv/bin/python examples/propagate_sample.py``
Writes ``docs/screenshot.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _wait(condition, timeout=600.0) -> None:
    from qtpy.QtWidgets import QApplication

    start = time.perf_counter()
    while not condition():
        QApplication.processEvents()
        time.sleep(0.005)
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the widget did not finish in time")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def main(out: Path = REPO / "docs" / "screenshot.png") -> None:
    import napari
    import torch
    from napari.utils.notifications import show_warning

    from napari_sam2med._qt.model_panel import cached_checkpoint
    from napari_sam2med._sample_data import synthetic_volume

    torch.set_num_threads(2)
    image, truth = synthetic_volume()
    viewer = napari.Viewer(title="napari-sam2med: synthetic sample")
    viewer.open_sample("napari-sam2med", "synthetic_volume")  # File > Open Sample
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2med", "SAM2 segment & propagate")
    viewer.window.resize(1500, 980)

    official = cached_checkpoint("sam2.1-tiny") is not None
    panel = widget.model_panel
    if official:
        panel.set_choice(name="sam2.1-tiny", image_size=512, device="auto")
    else:
        panel.dev_toggle.setChecked(True)
        panel.set_choice(name="sam2.1-tiny", image_size=256, device="cpu", random_init=True)
        viewer.title = "napari-sam2med: RANDOM weights (no checkpoint cached), masks are meaningless"
        show_warning("No sam2.1-tiny checkpoint cached: using random weights; the masks are meaningless.")
    panel.load()
    _wait(lambda: widget.model is not None or not panel.busy())
    if widget.model is None:
        sys.exit(f"model did not load: {panel.status.text()}")

    mid = image.shape[0] // 2
    viewer.dims.set_current_step(0, mid)
    points = widget.state.points_layer
    for obj_id in (1, 2):  # organ and first lesion: one positive click at each centroid
        widget.prompt_panel.object_spin.setValue(obj_id)
        centre = np.argwhere(truth[mid] == obj_id).mean(axis=0)
        points.feature_defaults = {"positive": True, "obj_id": obj_id}
        points.add(np.array([[mid, *centre]]))
        _wait(lambda: not widget.is_busy())
    # a negative click on the body next to the organ, and a box around lesion 3
    points.feature_defaults = {"positive": False, "obj_id": 1}
    points.add(np.array([[mid, image.shape[1] * 0.7, image.shape[2] * 0.3]]))
    _wait(lambda: not widget.is_busy())
    lesion = np.argwhere(truth[mid + 3] == 3)
    widget.prompt_panel.object_spin.setValue(3)
    (r0, c0), (r1, c1) = lesion.min(axis=0) - 2, lesion.max(axis=0) + 2
    widget.state.shapes_layer.feature_defaults = {"obj_id": 3}
    corners = [[mid + 3, r0, c0], [mid + 3, r0, c1], [mid + 3, r1, c1], [mid + 3, r1, c0]]
    widget.state.shapes_layer.add_rectangles([np.array(corners, float)])
    _wait(lambda: not widget.is_busy())

    start = time.perf_counter()
    if widget.propagate() is None:
        sys.exit(f"propagation did not start: {widget.status.text()}")
    _wait(lambda: not widget.is_busy())
    took = time.perf_counter() - start
    labels = np.asarray(widget.state.labels_layer.data)
    scores = {o: _dice(labels == o, truth == o) for o in (1, 2, 3)}
    print(f"propagated {image.shape[0]} slices in {took:.1f} s with {panel.choice().describe()}")
    print("Dice vs synthetic ground truth:", ", ".join(f"object {o}: {d:.3f}" for o, d in scores.items()))

    viewer.dims.set_current_step(0, mid)
    viewer.layers.selection.active = widget.state.labels_layer
    viewer.reset_view()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"screenshot: {out}")
    viewer.close()


if __name__ == "__main__":
    main()
