"""engine.metrics against hand-computed values, spacing order and the empty-mask conventions."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam2med.engine import metrics as M


def _img(shape, pixels):
    a = np.zeros(shape, bool)
    for p in pixels:
        a[p] = True
    return a


def test_dice_iou_hand_computed():
    pred = np.zeros((6, 6), bool)
    gt = np.zeros((6, 6), bool)
    pred[0:2, 0:2] = True  # 4 px
    gt[0:2, 1:4] = True  # 6 px, overlap = column 1 (2 px)
    assert M.dice(pred, gt) == pytest.approx(2 * 2 / 10)
    assert M.iou(pred, gt) == pytest.approx(2 / 8)


def test_boundary_counts():
    sq = np.zeros((7, 7), bool)
    sq[2:5, 2:5] = True
    assert M.boundary(sq).sum() == 8  # 3x3 square: all but the centre
    cube = np.zeros((7, 7, 7), bool)
    cube[2:5, 2:5, 2:5] = True
    assert M.boundary(cube).sum() == 26
    edge = np.ones((3, 3), bool)  # the array border counts as outside
    assert M.boundary(edge).sum() == 8
    plus = _img((5, 5), [(2, 2), (1, 2), (3, 2), (2, 1), (2, 3)])
    assert M.boundary(plus).sum() == 4  # the centre has all four face neighbours


def test_distance_uses_spacing_in_axis_order():
    gt = _img((10, 10), [(5, 5)])
    pred = _img((10, 10), [(5, 8)])  # 3 columns away
    assert M.hd95(pred, gt, spacing=(1.0, 0.5)) == pytest.approx(1.5)
    pred = _img((10, 10), [(8, 5)])  # 3 rows away
    assert M.hd95(pred, gt, spacing=(2.0, 1.0)) == pytest.approx(6.0)
    vol_gt = _img((6, 6, 6), [(1, 2, 2)])
    vol_pred = _img((6, 6, 6), [(4, 2, 2)])  # 3 slices apart at 2.5 mm
    assert M.hd95(vol_pred, vol_gt, spacing=(2.5, 0.8, 0.8)) == pytest.approx(7.5)


def test_hd95_percentile_and_surface_dice_hand_computed():
    gt = _img((3, 12), [(0, 0)])
    pred = _img((3, 12), [(0, 0), (0, 2), (0, 4)])  # isolated pixels: each is its own boundary
    # pred -> gt distances 0, 2, 4: 95th percentile (linear) = 2 + 0.9 * 2; gt -> pred: 0
    assert M.hd95(pred, gt) == pytest.approx(3.8)
    # within 2 px: 2 of pred's 3 boundary pixels, gt's 1 of 1 -> (2 + 1) / (3 + 1)
    assert M.surface_dice(pred, gt, tolerance=2.0) == pytest.approx(0.75)
    assert M.surface_dice(pred, gt, tolerance=4.0) == pytest.approx(1.0)
    assert M.surface_dice(pred, gt, tolerance=1.0, spacing=(1.0, 0.5)) == pytest.approx(0.75)


def test_crop_is_exact_against_full_volume():
    rng = np.random.default_rng(3)
    pred = ndi.gaussian_filter(rng.random((12, 40, 40)), 2) > 0.52
    gt = ndi.gaussian_filter(rng.random((12, 40, 40)), 2) > 0.52
    assert pred.any() and gt.any()
    s = (2.0, 0.7, 0.7)
    bp, bg = M.boundary(pred), M.boundary(gt)  # uncropped reference
    d_pg = ndi.distance_transform_edt(~bg, sampling=s)[bp]
    d_gp = ndi.distance_transform_edt(~bp, sampling=s)[bg]
    ref = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
    assert M.hd95(pred, gt, s) == pytest.approx(ref)


def test_empty_conventions():
    e = np.zeros((4, 5, 5), bool)
    f = e.copy()
    f[1, 2, 2] = True
    assert M.dice(e, e) == 1.0 and M.iou(e, e) == 1.0
    assert M.hd95(e, e) == 0.0 and M.surface_dice(e, e) == 1.0
    assert M.dice(f, e) == 0.0 and M.iou(e, f) == 0.0
    assert math.isinf(M.hd95(f, e)) and math.isinf(M.hd95(e, f))
    assert M.surface_dice(f, e) == 0.0
    assert M.over_propagation_rate(e, e) == 0.0
    assert math.isinf(M.over_propagation_rate(f, e))
    with pytest.raises(ValueError):
        M.surface_distances(f, e)


def test_over_propagation_hand_computed():
    gt = np.zeros((4, 4, 4), bool)
    gt[1:3, 0:2, 0:2] = True  # 8 voxels on slices 1-2
    pred = gt.copy()
    pred[0, 0, 0:2] = True  # 2 voxels on empty slice 0
    pred[3, 3, 0:2] = True  # 2 voxels on empty slice 3
    pred[1, 3, 3] = True  # an extra voxel on a GT slice does not count
    assert M.over_propagation_rate(pred, gt) == pytest.approx(4 / 8)


def test_slice_dice_nan_where_both_empty():
    gt = np.zeros((3, 4, 4), bool)
    gt[1, :2, :2] = True
    pred = np.zeros_like(gt)
    pred[1, :2, :1] = True
    pred[2, 0, 0] = True
    d = M.slice_dice(pred, gt)
    assert math.isnan(d[0]) and d[1] == pytest.approx(2 * 2 / 6) and d[2] == 0.0


def test_volume_and_object_rows():
    gt = np.zeros((3, 8, 8), np.int32)
    gt[1, 1:3, 1:3] = 1
    gt[1, 5:7, 5:7] = 2
    pred = np.zeros_like(gt)
    pred[1, 1:3, 1:3] = 1
    pred[0, 5:7, 5:7] = 3  # a spurious id
    row = M.volume_metrics(pred == 1, gt == 1, spacing=(2.5, 0.8, 0.8), tolerance=1.0)
    assert row["dice"] == 1.0 and row["hd95"] == 0.0 and row["surface_dice"] == 1.0
    assert row["spacing"] == "2.5x0.8x0.8" and row["gt_voxels"] == 4 and row["over_propagation"] == 0.0
    rows = {r["object"]: r for r in M.object_metrics(pred, gt, spacing=(2.5, 0.8, 0.8))}
    assert sorted(rows) == [1, 2, 3]
    assert rows[1]["dice"] == 1.0 and rows[2]["dice"] == 0.0 and rows[3]["dice"] == 0.0
    assert math.isinf(rows[3]["over_propagation"])
    only = M.object_metrics(pred, gt, ids=[2])
    assert [r["object"] for r in only] == [2]


def test_bad_input():
    with pytest.raises(ValueError, match="differs"):
        M.dice(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(np.ones((2, 2)), np.ones((2, 2)), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(np.ones((2, 2)), np.ones((2, 2)), spacing=(1, 0))
