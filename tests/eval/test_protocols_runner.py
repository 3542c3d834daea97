"""eval.protocols by hand; eval.runner puts each prompt where it belongs (whole slice and crop mode)."""

import numpy as np
import pytest

from napari_sam2med.engine import run_to_end
from napari_sam2med.eval.protocols import KeySlice, Protocol, box_of, click_points, key_slice, prompt_object
from napari_sam2med.eval.runner import EvalConfig, evaluate
from napari_sam2med.train.data import LabeledVolume
from napari_sam2med.train.synthetic import SyntheticVolumeConfig, make_volume


def test_key_slice_rules():
    gt = np.zeros((7, 8, 8), bool)
    gt[1, :2, :2] = True
    gt[2, :4, :4] = True  # largest
    gt[3:6, :1, :1] = True
    assert key_slice(gt) == 2
    assert key_slice(gt, KeySlice.MIDDLE) == 3  # slices 1..5 -> the third
    with pytest.raises(ValueError):
        key_slice(np.zeros((3, 4, 4), bool))


def test_box_and_clicks():
    m = np.zeros((20, 20), bool)
    m[3:9, 5:16] = True
    assert box_of(m) == (3, 5, 8, 15)  # inclusive pixel indices
    pts = click_points(m, 4, seed=1)
    assert pts.shape == (4, 2)
    assert all(m[int(r), int(c)] for r, c in pts)
    assert tuple(pts[0]) in {(5.0, 10.0), (6.0, 10.0)}  # the most interior pixel (row 5 or 6, col 10)
    assert np.array_equal(pts, click_points(m, 4, seed=1))
    with pytest.raises(ValueError):
        click_points(m, 0)


class _Recorder:
    def __init__(self):
        self.calls = []

    def set_box(self, *a):
        self.calls.append(("box", a))

    def set_mask(self, *a):
        self.calls.append(("mask", a))

    def add_points(self, *a, **k):
        self.calls.append(("points", a))


def test_prompt_object_kinds():
    m = np.zeros((10, 10), bool)
    m[2:5, 3:7] = True
    for proto, kind in ((Protocol.BOX_MIDDLE, "box"), (Protocol.MASK_ONE_SLICE, "mask"), ("points-k", "points")):
        rec = _Recorder()
        prompt_object(rec, 1, m, proto, 4, points=2)
        assert rec.calls[0][0] == kind and rec.calls[0][1][:2] == (1, 4)
    assert rec.calls[0][1][2].shape == (2, 2)


@pytest.fixture(scope="module")
def tiny_model():
    from napari_sam2med.sam2 import load_model

    return load_model("sam2.1-test", image_size=64, random_init=True, device="cpu")


@pytest.mark.parametrize("crop", [None, 2.5])
def test_mask_prompt_lands_on_its_slice(tiny_model, crop):
    """SAM2 outputs a mask prompt as it is, so the prompted slice must score ~1 (whole slice or crop)."""
    img, lab = make_volume(SyntheticVolumeConfig(shape=(5, 64, 64), n_objects=(2, 2), kinds=("lesion", "blob")), 4)
    vol = LabeledVolume("v", img, lab, (2.0, 1.0, 1.0))
    cfg = EvalConfig(protocol="mask-one-slice", crop_context=crop)
    steps = []
    (res,) = run_to_end(evaluate(tiny_model, [vol], cfg), steps.append)
    ids = sorted(set(np.unique(lab).tolist()) - {0})
    assert len(steps) == 5 * len(ids) and steps[-1].done == steps[-1].total == 5 * len(ids)
    for row in res.object_rows:
        assert row["key_slice"] == key_slice(lab == row["object"])
        assert row["slice_dice"] > 0.9, row
    assert res.labels.shape == lab.shape and res.volume_row["objects"] == len(ids)
