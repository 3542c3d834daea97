"""The propagation pipeline on a real CT lesion volume (skipped without ../shared/data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from napari_sam2med.sam2 import load_model

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "ct_lesions.py"


@pytest.mark.shared_data
def test_box_prompt_propagation_on_ct(shared_data):
    spec = importlib.util.spec_from_file_location("ct_lesions", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    case = sorted((shared_data / "ct_lesions").glob("*.npz"))[1]
    model = load_model("sam2.1-test", image_size=64, random_init=True, device="cpu")
    r = bench.evaluate_case(model, case)
    gts = np.load(case)["gts"]
    assert r["slices"] == len(gts)
    assert r["key_slice"] == int(np.argmax(gts.sum(axis=(1, 2))))
    assert 0.0 <= r["volume_dice"] <= 1.0 and 0.0 <= r["mean_slice_dice"] <= 1.0


def test_dice_by_hand():
    spec = importlib.util.spec_from_file_location("ct_lesions", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    a = np.array([[1, 1], [0, 0]], bool)
    b = np.array([[1, 0], [1, 0]], bool)
    assert bench.dice(a, b) == pytest.approx(0.5)
    assert bench.dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
