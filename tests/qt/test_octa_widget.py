"""OctaWidget headless: load a synthetic case, automatic / manual runs through the worker, cancel."""

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_sam2med._qt._worker import Outcome  # noqa: E402
from napari_sam2med._qt.octa_panels import CaseKind, OctaTask, PromptMode  # noqa: E402
from napari_sam2med._qt.octa_widget import (  # noqa: E402
    GT_NAME,
    IMAGE_NAME,
    OBJECTS_NAME,
    PROMPTS_NAME,
    OctaWidget,
)
from napari_sam2med.octa.synthetic import make_synthetic_octa, write_layer_sequence_folder  # noqa: E402


@pytest.fixture
def octa(make_napari_viewer, tiny_model, tmp_path, helpers):
    case = make_synthetic_octa(n_layers=4, size=64, n_vessels=3, seed=2)
    folder = write_layer_sequence_folder(tmp_path / "rv", case, "rv")
    viewer = make_napari_viewer()
    w = helpers.open_dock(viewer, "OCTA (SAM-OCTA2)")
    assert isinstance(w, OctaWidget)
    w.set_model(tiny_model)
    return viewer, w, case, folder


def test_load_case_fills_layers(octa):
    viewer, w, case, folder = octa
    w.load_case(folder)
    np.testing.assert_array_equal(viewer.layers[IMAGE_NAME].data, case.images)
    np.testing.assert_array_equal(viewer.layers[OBJECTS_NAME].data, case.vessels)
    assert w.params.task is OctaTask.RV and w.params.value("reference_layer") == 2
    lp = w.layers_panel
    assert lp.reference_combo.currentText() == OBJECTS_NAME and lp.gt_combo.currentText() == GT_NAME


def test_automatic_run_with_metrics(octa, qtbot):
    viewer, w, case, folder = octa
    w.load_case(folder)
    w.params.set("positives", 2)
    w.run_btn.click()
    assert w.worker is not None and not w.run_btn.isEnabled()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    result = viewer.layers["OCTA RV"]
    assert result.data.shape == case.images.shape and result.data.dtype == np.int32
    assert result.metadata["object_ids"] == [1, 2, 3]
    assert w.progress.value() == 4 and w.progress.maximum() == 4
    assert w.table.rowCount() == 5 and w.table.item(4, 0).text() == "overall"
    # every row is visible without scrolling the table, and the dock itself scrolls
    from qtpy.QtWidgets import QScrollArea

    rows = sum(w.table.rowHeight(i) for i in range(5))
    assert w.table.height() >= rows + w.table.horizontalHeader().height()
    assert w.findChild(QScrollArea) is not None
    # the table shows the metrics computed from the result layer (no made-up numbers)
    from napari_sam2med.octa.metrics import sequence_metrics

    rows = sequence_metrics(result.data > 0, case.vessels > 0)
    assert float(w.table.item(4, 1).text()) == pytest.approx(rows[-1]["dice"], abs=1e-4)
    n_layers = len(viewer.layers)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert len(viewer.layers) == n_layers  # replaced, not duplicated


def test_manual_prompts(octa, qtbot):
    viewer, w, case, folder = octa
    w.load_case(folder)
    w.params.set("prompts", PromptMode.MANUAL)
    w.manual_panel.prompt_btn.click()
    layer = viewer.layers[PROMPTS_NAME]
    # ready for clicks: active, in add mode, sized to the image, polarity by colour and symbol
    assert viewer.layers.selection.active is layer and layer.mode == "add"
    assert layer.current_size >= 3.0
    w.manual_panel.object_spin.setValue(4)
    layer.add([1, 32.0, 32.0])
    w.manual_panel.negative_check.setChecked(True)
    layer.add([1, 5.0, 5.0])
    assert list(layer.features["obj_id"]) == [4, 4] and list(layer.features["positive"]) == [True, False]
    assert [str(s) for s in layer.symbol] == ["disc", "cross"]
    assert not np.allclose(layer.border_color[0], layer.border_color[1])
    assert w._clicks(4) == [(4, 1, 32.0, 32.0, 1), (4, 1, 5.0, 5.0, 0)]
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert viewer.layers["OCTA RV"].metadata["object_ids"] == [4]


def test_cancel_and_errors(octa, qtbot, monkeypatch):
    viewer, w, case, folder = octa
    errors = []
    monkeypatch.setattr("napari_sam2med._qt.octa_widget.show_error", errors.append)
    w.run()
    assert errors and "case" in errors[-1] and w.worker is None
    w.load_case(folder)
    w.params.set("reference_layer", 9)
    w.run()
    assert "outside" in errors[-1] and w.worker is None
    w.params.set("reference_layer", 1)
    viewer.layers[IMAGE_NAME].data = np.repeat(case.images, 6, axis=0)  # 24 layers
    viewer.layers.remove(GT_NAME)
    before = {lyr.name for lyr in viewer.layers}
    w.run()
    w.cancel_btn.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert {lyr.name for lyr in viewer.layers} == before and w.run_btn.isEnabled()
    assert PROMPTS_NAME not in viewer.layers
    # cancelled by the user, not crashed (a failing job would also add no layers)
    assert w.last_end.outcome is Outcome.CANCELLED and w.last_end.reason == "cancelled by the user"
    assert w.last_end.done is None or w.last_end.done < 24


def _write_projection_root(root, case):
    import imageio.v3 as iio

    for i, name in enumerate(("FULL", "ILM_OPL", "OPL_BM")):
        (root / "ProjectionMaps" / name).mkdir(parents=True)
        iio.imwrite(root / "ProjectionMaps" / name / "7.bmp", case.images[i])
    (root / "GT_FAZ").mkdir()
    iio.imwrite(root / "GT_FAZ" / "7.bmp", (case.faz[0] * 255).astype(np.uint8))


def test_projection_case_fused(octa, qtbot, tmp_path):
    viewer, w, case, _ = octa
    _write_projection_root(tmp_path / "proj", case)
    w.params.set("task", OctaTask.FAZ)
    w.load_case(tmp_path / "proj", kind=CaseKind.PROJECTIONS)
    assert viewer.layers[IMAGE_NAME].data.shape == (3, 64, 64)
    np.testing.assert_array_equal(viewer.layers[GT_NAME].data > 0, case.faz[0])
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    fused = viewer.layers["OCTA FAZ (fused)"].data
    assert fused.shape == (64, 64) and viewer.layers["OCTA FAZ (per projection)"].data.shape == (3, 64, 64)
    assert w.table.rowCount() == 2 and w.table.item(0, 0).text() == "7 fused"


def test_parameter_form_persists_and_restores_defaults(qtbot):
    from napari_sam2med._qt.octa_panels import ParametersPanel

    first = ParametersPanel()
    qtbot.addWidget(first)
    first.set("positives", 7)
    first.set("task", OctaTask.FAZ)
    qtbot.wait(600)  # magicgui writes persisted values after a short debounce
    second = ParametersPanel()  # a new dock (or a new session) starts from the saved values
    qtbot.addWidget(second)
    assert second.value("positives") == 7 and second.task is OctaTask.FAZ
    second.restore_btn.click()
    assert second.value("positives") == 3 and second.task is OctaTask.RV and second.mode is PromptMode.AUTOMATIC
