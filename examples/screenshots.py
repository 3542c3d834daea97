"""Screenshots of the three docks for the README, each opened from the Plugins menu path.

* ``docs/screenshot_objects.png``: the segment dock on the synthetic CT sample, three named objects
  boxed, propagated and one committed, with the object list and the Dice against the sample's ground truth.
* ``docs/screenshot_flow.png``: the SAM2Flow dock on the synthetic capillary-flow sample (its own
  prompt points), run with the shipped SAM2Flow weights (TV-L1 when they are missing).
* ``docs/screenshot_octa.png``: the OCTA dock on a synthetic OCTA layer sequence, automatic prompts.

The segment and OCTA docks load the model their panel preselects, as a user pressing "Load model"
would: the first official SAM2 checkpoint in the cache, else ``sam2med-small-ct`` (shipped with the
plugin). Never random weights. The window title names the model.

Run headless: ``xvfb-run -a .venv/bin/python examples/screenshots.py [objects|flow|octa ...]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

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


def _load_model(panel) -> str:
    """Load the model the panel preselects (never random weights); returns what was loaded."""
    assert not panel.choice().random_init
    panel.load()
    _wait(lambda: not panel.busy())
    return panel.choice().describe()


def objects(out: Path = DOCS / "screenshot_objects.png") -> None:
    import napari
    from propagate_sample import box_prompts

    from napari_sam2med._sample_data import synthetic_volume

    viewer = napari.Viewer(title="napari-sam2med: segment & propagate")
    viewer.open_sample(PLUGIN, "synthetic_volume")  # the volume and its (hidden) ground truth
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "SAM2 segment & propagate")
    widget.setMinimumWidth(520)
    viewer.window.resize(1700, 1100)
    viewer.title += f" ({_load_model(widget.model_panel)})"
    _, truth = synthetic_volume()
    box_prompts(widget, truth)
    widget.propagate()
    _wait(lambda: not widget.is_busy())
    viewer.dims.set_current_step(0, truth.shape[0] // 2)
    widget.prompt_panel.object_spin.setValue(3)
    if (widget.state.labels_layer.data == 3).any():  # a weak model may find nothing to commit
        widget.commit_object()
    widget.reference_panel.compute()
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
    viewer.title += f" ({_load_model(widget.model_panel)})"
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
    for name in names or ["objects", "flow", "octa"]:
        {"objects": objects, "flow": flow, "octa": octa}[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
