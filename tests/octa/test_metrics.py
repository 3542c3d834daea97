import math

import numpy as np
import pytest

from napari_sam2med.octa.metrics import (
    Confusion,
    confusion,
    hd95,
    mask_metrics,
    scores,
    sequence_metrics,
    write_metrics_csv,
)

# 4x4 by hand:            pred          gt
#                         1 1 0 0       1 0 0 0
#                         1 1 0 0       1 0 0 0
#                         0 0 0 0       1 0 0 0
#                         0 0 0 1       0 0 0 0
PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], bool)
GT = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
# TP = (0,0),(1,0) = 2; FP = (0,1),(1,1),(3,3) = 3; FN = (2,0) = 1; TN = 16 - 6 = 10


def test_confusion_by_hand():
    assert confusion(PRED, GT) == Confusion(tp=2, fp=3, fn=1, tn=10)


def test_scores_by_hand():
    s = scores(confusion(PRED, GT))
    assert s["dice"] == pytest.approx(4 / 8)
    assert s["jaccard"] == pytest.approx(2 / 6)
    assert s["precision"] == pytest.approx(2 / 5)   # TP / (TP + FP)
    assert s["recall"] == pytest.approx(2 / 3)      # TP / (TP + FN)
    assert s["specificity"] == pytest.approx(10 / 13)  # TN / (TN + FP)


def test_hd95_by_hand():
    # pred boundary = all 5 pred pixels; gt boundary = the 3 gt pixels.
    # pred -> gt distances: (0,0)0 (0,1)1 (1,0)0 (1,1)1 (3,3)->(2,0) sqrt(1+9)
    # gt -> pred: (0,0)0 (1,0)0 (2,0)1
    d = np.array([0, 1, 0, 1, math.sqrt(10)])
    expected = max(np.percentile(d, 95), np.percentile([0, 0, 1], 95))
    assert hd95(PRED, GT) == pytest.approx(expected)
    assert hd95(PRED, GT, spacing=(2.0, 2.0)) == pytest.approx(2 * expected)


def test_empty_cases():
    z = np.zeros((4, 4), bool)
    both = mask_metrics(z, z)
    assert both == {"dice": 1.0, "jaccard": 1.0, "precision": 1.0, "recall": 1.0,
                    "specificity": 1.0, "hd95": 0.0}
    missed = mask_metrics(z, GT)  # nothing predicted, something there
    assert missed["dice"] == 0.0 and missed["precision"] == 0.0 and missed["recall"] == 0.0
    assert missed["hd95"] == math.inf and missed["specificity"] == 1.0
    spurious = mask_metrics(GT, z)
    assert spurious["recall"] == 0.0 and spurious["precision"] == 0.0
    assert spurious["specificity"] == pytest.approx(13 / 16)
    with pytest.raises(ValueError):
        confusion(z, np.zeros((3, 3)))


def test_sequence_micro_overall(tmp_path):
    pred = np.stack([PRED, GT])
    gt = np.stack([GT, GT])
    rows = sequence_metrics(pred, gt, layer_names=["a", "b"])
    assert [r["layer"] for r in rows] == ["a", "b", "overall"]
    assert rows[1]["dice"] == 1.0 and rows[1]["hd95"] == 0.0
    # micro: TP 2+3, FP 3+0, FN 1+0, TN 10+13
    assert rows[2]["dice"] == pytest.approx(10 / 14)
    assert rows[2]["precision"] == pytest.approx(5 / 8)
    assert rows[2]["recall"] == pytest.approx(5 / 6)
    assert rows[2]["specificity"] == pytest.approx(23 / 26)
    out = write_metrics_csv(tmp_path / "m.csv", rows)
    text = out.read_text().splitlines()
    assert text[0].startswith("layer,dice,jaccard") and len(text) == 4
