"""Screenshots of the three docks for the README, each opened from the Plugins menu path.

* ``docs/screenshot_objects.png``: the segment dock on the synthetic CT sample, two named objects
  clicked, propagated and one committed, with the object list.
* ``docs/screenshot_flow.png``: the SAM2Flow dock on the synthetic capillary-flow sample (its own
  prompt points), run with the shipped SAM2Flow weights (TV-L1 when they are missing).
* ``docs/screenshot_octa.png``: the OCTA dock on a synthetic OCTA layer sequence, automatic prompts.

SAM2 weights cannot be downloaded here: when no official ``sam2.1-tiny`` checkpoint is cached, the
segment and OCTA docks use RANDOM weights, which the window title says (their masks are meaningless;
the screenshots show the interface, not a result).

Run headless: ``xvfb-run -a .venv/bin/python examples/screenshots.py [objects|flow|octa ...]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PLUGIN = "napari-sam2med"


def _wait(condition, timeout: float = 900.0) -> None:
    from qtpy.QtWidgets import QApplication

    start = time.perf_counter()
    while not condition():
        QApplication.processEvents()
        time.sleep(0.01)
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the dock did not finish in time")


def _settle(seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def _load_model(viewer, panel, size: int) -> str:
    """Load sam2.1-tiny through the dock's model panel: official weights when cached, else random."""
    from napari_sam2med._qt.model_panel import cached_checkpoint

    official = cached_checkpoint("sam2.1-tiny") is not None
    if not official:
        panel.dev_toggle.setChecked(True)
    panel.set_choice(name="sam2.1-tiny", image_size=size, device="cpu", random_init=not official)
    panel.load()
    _wait(lambda: not panel.busy())
    return "" if official else " (RANDOM weights: no checkpoint cached, masks are meaningless)"


def objects(out: Path = DOCS / "screenshot_objects.png") -> None:
    import napari

    from napari_sam2med._sample_data import synthetic_volume

    viewer = napari.Viewer(title="napari-sam2med: segment & propagate")
    viewer.open_sample(PLUGIN, "synthetic_volume")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "SAM2 segment & propagate")
    widget.setMinimumWidth(520)
    viewer.window.resize(1700, 1100)
    note = _load_model(viewer, widget.model_panel, 256)
    viewer.title += note
    _, truth = synthetic_volume()
    mid = truth.shape[0] // 2
    viewer.dims.set_current_step(0, mid)
    points = widget.state.points_layer
    for obj_id, name in ((1, "liver"), (2, "lesion")):
        if obj_id > 1:
            widget.new_object()
        centre = np.argwhere(truth[mid] == obj_id).mean(axis=0)
        points.feature_defaults = {"positive": True, "obj_id": obj_id}
        points.add(np.array([[mid, *centre]]))
        _wait(lambda: not widget.is_busy())
        widget.rename_object(obj_id, name)
    points.feature_defaults = {"positive": False, "obj_id": 1}
    points.add(np.array([[mid, truth.shape[1] * 0.7, truth.shape[2] * 0.3]]))
    _wait(lambda: not widget.is_busy())
    widget.propagate()
    _wait(lambda: not widget.is_busy())
    widget.prompt_panel.object_spin.setValue(1)
    if (widget.state.labels_layer.data == 1).any():  # random weights may find nothing to commit
        widget.commit_object()
    widget.help_panel.toggle.setChecked(True)
    viewer.layers.selection.active = widget.state.points_layer
    _shoot(viewer, out)


def flow(out: Path = DOCS / "screenshot_flow.png") -> None:
    import napari

    from napari_sam2med.flow.command import has_default_weights

    viewer = napari.Viewer(title="napari-sam2med: SAM2Flow on the synthetic capillary video")
    viewer.open_sample(PLUGIN, "capillary_video")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "SAM2Flow")
    widget.setMinimumWidth(420)
    viewer.window.resize(1600, 1050)
    widget.method_panel.set_method("sam2flow" if has_default_weights() else "tvl1")
    widget.run()
    _wait(lambda: widget.worker is None)
    end = widget.last_end
    if end is None or end.outcome.value != "done":
        sys.exit(f"flow did not finish: {end}")
    viewer.dims.set_current_step(0, 5)
    _shoot(viewer, out)


def octa(out: Path = DOCS / "screenshot_octa.png") -> None:
    import napari

    from napari_sam2med.octa.synthetic import make_synthetic_octa, write_layer_sequence_folder

    viewer = napari.Viewer(title="napari-sam2med: OCTA")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "OCTA (SAM-OCTA2)")
    widget.setMinimumWidth(520)
    viewer.window.resize(1700, 1100)
    viewer.title += _load_model(viewer, widget.model_panel, 256)
    with tempfile.TemporaryDirectory() as tmp:
        case = make_synthetic_octa(n_layers=6, size=192, n_vessels=4, seed=2)
        widget.load_case(write_layer_sequence_folder(Path(tmp) / "rv", case, "rv"))
    widget.run()
    _wait(lambda: widget.worker is None)
    viewer.dims.set_current_step(0, 3)
    _shoot(viewer, out)


def _shoot(viewer, out: Path) -> None:
    viewer.reset_view()
    _settle(1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"screenshot: {out}")
    viewer.close()


def main(names: list[str]) -> None:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)  # the same random weights every run when no checkpoint is cached
    for name in names or ["objects", "flow", "octa"]:
        {"objects": objects, "flow": flow, "octa": octa}[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
