"""Segmentation metrics per layer and over a whole layer sequence.

Counts on binary masks (prediction ``P``, ground truth ``G``):
TP = P & G, FP = P & ~G (predicted, not true), FN = ~P & G (missed),
TN = ~P & ~G. (SAM-OCTA2's evaluation code swaps FP and FN; we do not.)

* Dice = 2TP / (2TP + FP + FN); Jaccard = TP / (TP + FP + FN)
* precision = TP / (TP + FP); recall = TP / (TP + FN); specificity = TN / (TN + FP)
* HD95: the larger of the two directed 95th percentiles of distances from the
  boundary pixels of one mask to the boundary of the other, in pixels times
  ``spacing`` (``engine.metrics.hd95``: boundary = mask minus its 4-connected erosion).

Empty cases, defined explicitly: a ratio whose denominator is 0 is 1.0 (both
masks agree there is nothing to count: e.g. Dice/Jaccard of two empty masks,
precision when nothing is predicted *and* nothing is true). Precision with
TP + FP = 0 but FN > 0 is 0.0 (nothing predicted while something was there);
recall with TP + FN = 0 but FP > 0 is 0.0. HD95 is 0.0 when both masks are
empty and ``inf`` when exactly one is.

"Overall" rows are micro averages: counts summed over all layers, and HD95
from the pooled per-layer boundary distances.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..engine.metrics import hd95, surface_distances  # the one implementation (boundary, spacing, empty rules)
from ..io.writers import atomic_write

METRIC_NAMES = ("dice", "jaccard", "precision", "recall", "specificity", "hd95")


@dataclass
class Confusion:
    """Pixel counts of one comparison."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    return pred, gt


def confusion(pred: np.ndarray, gt: np.ndarray) -> Confusion:
    """TP, FP, FN, TN of two masks (non-zero = foreground)."""
    pred, gt = _check_pair(pred, gt)
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    return Confusion(tp=tp, fp=fp, fn=fn, tn=int(pred.size) - tp - fp - fn)


def _ratio(num: int, den: int, empty: float) -> float:
    return float(num) / den if den else empty


def scores(c: Confusion) -> dict[str, float]:
    """Dice, Jaccard, precision, recall and specificity from counts (empty rules above)."""
    return {
        "dice": _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, 1.0),
        "jaccard": _ratio(c.tp, c.tp + c.fp + c.fn, 1.0),
        "precision": _ratio(c.tp, c.tp + c.fp, 1.0 if c.fn == 0 else 0.0),
        "recall": _ratio(c.tp, c.tp + c.fn, 1.0 if c.fp == 0 else 0.0),
        "specificity": _ratio(c.tn, c.tn + c.fp, 1.0),
    }


def mask_metrics(pred: np.ndarray, gt: np.ndarray, spacing=None) -> dict[str, float]:
    """All metrics of one 2D comparison."""
    out = scores(confusion(pred, gt))
    out["hd95"] = hd95(pred, gt, spacing)
    return out


def sequence_metrics(pred: np.ndarray, gt: np.ndarray, layer_names=None, spacing=None) -> list[dict]:
    """Per-layer rows plus a final ``"overall"`` (micro) row for (L, H, W) stacks.

    Each row: ``{"layer": name, dice, jaccard, precision, recall, specificity,
    hd95, tp, fp, fn, tn}``.
    """
    pred, gt = _check_pair(pred, gt)
    if pred.ndim != 3:
        raise ValueError(f"expected (L, H, W) stacks, got shape {pred.shape}")
    names = list(layer_names) if layer_names is not None else [str(i) for i in range(pred.shape[0])]
    if len(names) != pred.shape[0]:
        raise ValueError(f"{len(names)} layer names for {pred.shape[0]} layers")
    rows, total = [], Confusion()
    pooled_pg, pooled_gp, one_empty = [], [], False
    for name, p, g in zip(names, pred, gt):
        c = confusion(p, g)
        total = total + c
        row = {"layer": name, **scores(c), "hd95": hd95(p, g, spacing), **asdict(c)}
        rows.append(row)
        if p.any() and g.any():
            d_pg, d_gp = surface_distances(p, g, spacing)
            pooled_pg.append(d_pg)
            pooled_gp.append(d_gp)
        elif p.any() != g.any():
            one_empty = True
    if one_empty:
        overall_hd = float("inf")
    elif pooled_pg:
        overall_hd = float(max(np.percentile(np.concatenate(pooled_pg), 95),
                               np.percentile(np.concatenate(pooled_gp), 95)))
    else:
        overall_hd = 0.0
    rows.append({"layer": "overall", **scores(total), "hd95": overall_hd, **asdict(total)})
    return rows


def write_metrics_csv(path: str | Path, rows: list[dict]) -> Path:
    """Write metric rows to CSV atomically (``io.writers.atomic_write``: a failure leaves no file).

    Parameters
    ----------
    path : str or Path
        Output ``.csv``.
    rows : list of dict
        Rows with the same keys (the first row's keys are the header).

    Returns
    -------
    Path
        ``path``.
    """
    if not rows:
        raise ValueError("no metric rows to write")

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)
