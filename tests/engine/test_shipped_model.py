"""Behaviour of the shipped small SAM2 (issue 18) on the synthetic samples, through the real Session.

Every check runs with the shipped weights (it must pass) and with random weights of the same
architecture (it must NOT pass), so each test can fail. The shipped weights are the registry's
``sam2med-small-ct``; ``SAM2MED_TEST_CHECKPOINT=path.pt`` tests another checkpoint of that
architecture (e.g. a training run's). Without shipped weights the shipped cases are skipped.

The shipped model was trained on crops around the prompt (``train/crop.py``, context 2-4.5), so a
single-object check runs its Session on the window ``CROP_CONTEXT`` x the prompt box around the
object (the same window on every slice, as ``sam2med evaluate --crop-context`` does), and pastes
the prediction back before scoring against the full ground truth. The two-object check uses the
whole 128 px frame (the blobs are far apart, so the window would be the frame anyway).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam2med._sample_data import synthetic_timeseries, synthetic_volume
from napari_sam2med.engine import Session, run_to_end
from napari_sam2med.engine.metrics import dice
from napari_sam2med.eval.protocols import box_of, key_slice
from napari_sam2med.train.crop import cut, paste, window_from_box

MODEL = "sam2med-small-ct"
SHAPE = (12, 128, 128)
WINDOW = (-160.0, 240.0)  # the napari sample's contrast limits
CROP_CONTEXT = 3.0  # the shipped model's inference crop (window side / box side)



@pytest.fixture(scope="module")
def models():
    from napari_sam2med.sam2 import load_model

    out = {"random": load_model(MODEL, random_init=True, device="cpu")}
    ckpt = os.environ.get("SAM2MED_TEST_CHECKPOINT") or None
    try:
        out["shipped"] = load_model(MODEL, checkpoint=ckpt, device="cpu", offline=True, progress=False)
    except (FileNotFoundError, ValueError, KeyError, OSError) as err:
        out["shipped"] = err
    return out


#: Checks the shipped weights do not pass yet (test node name -> measured values). The thresholds stay
#: those of issue 18; these are expected failures, reported in benchmarks/RESULTS.md, not relaxed tests.
_V1 = "sam2med_small_ct_v1 measured 2026-11-30 (2-core CPU): "
SHIPPED_SHORTFALLS: dict[str, str] = {
    "test_box_on_one_slice_propagates_both_ways[shipped-1]": _V1 + "organ 3D Dice 0.007 (issue 18: >= 0.8)",
    "test_box_on_one_slice_propagates_both_ways[shipped-2]": _V1 + "bright lesion 3D Dice 0.000 (>= 0.8)",
    "test_two_anchors_at_least_as_good_as_one[shipped]": _V1 + "two anchors 0.007, one 0.007 (needs >= 0.8)",
    "test_negative_click_shrinks_the_error[shipped]": _V1 + "error 1917 -> 1889 px, Dice after 0.004",
    "test_later_correction_improves_following_slices_and_sticks[shipped]":
        _V1 + "slices after the correction 0.010 -> 0.010, corrected slice Dice 0.000 (it does stick)",
    "test_two_objects_do_not_swap_or_merge[shipped]": _V1 + "Dice per object 0.000 / 0.001 on the movie",
    "test_mask_prompt_reproduces_label_and_carries_it[shipped]":
        _V1 + "own slice 0.992 (SAM2 outputs the mask prompt), the 4 neighbouring slices 0.000",
}


@pytest.fixture(params=["shipped", "random"])
def weights(request, models):
    m = models[request.param]
    if isinstance(m, Exception):
        pytest.skip(f"no shipped {MODEL} weights: {m}")
    reason = SHIPPED_SHORTFALLS.get(request.node.name)
    if request.param == "shipped" and reason and not os.environ.get("SAM2MED_TEST_CHECKPOINT"):
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=False))
    return request.param, m


@pytest.fixture(scope="module")
def volume():
    image, labels = synthetic_volume(SHAPE, seed=0)
    lo, hi = WINDOW
    u8 = np.round(np.clip((image.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return u8, labels


class View:
    """A Session on the crop window around a box (or the whole stack when ``context`` is None)."""

    def __init__(self, model, image: np.ndarray, box, context: float | None = CROP_CONTEXT):
        self.shape = image.shape[1:]
        if context is None:
            self.win = (0, 0, max(self.shape))
        else:
            r0, c0, r1, c1 = box
            self.win = window_from_box((r0, c0, r1 + 1, c1 + 1), context, 32, self.shape)
        self.session = Session(model, cut(image, self.win))

    def cut(self, mask2d: np.ndarray) -> np.ndarray:
        return cut(mask2d, self.win)

    def box(self, mask2d: np.ndarray):
        return box_of(self.cut(mask2d))

    def point(self, rc) -> tuple[int, int]:
        return rc[0] - self.win[0], rc[1] - self.win[1]

    def full(self, crop_mask: np.ndarray) -> np.ndarray:
        if crop_mask.ndim == 2:
            return paste(crop_mask, self.win, self.shape)
        return np.stack([paste(m, self.win, self.shape) for m in crop_mask])


def _expect(kind: str, ok: bool, detail: str) -> None:
    if kind == "shipped":
        assert ok, f"shipped weights fail: {detail}"
    else:
        assert not ok, f"random weights pass, so this test cannot fail: {detail}"


def _box_propagate(model, image, gt, anchors, key: int) -> np.ndarray:
    v = View(model, image, box_of(gt[key]))
    for z in anchors:
        v.session.set_box(1, z, v.box(gt[z]))
    return v.full(run_to_end(v.session.propagate("both")) == 1)


@pytest.mark.parametrize("obj", [1, 2])  # the organ and the bright lesion
def test_box_on_one_slice_propagates_both_ways(weights, volume, obj):
    kind, model = weights
    image, labels = volume
    gt = labels == obj
    z = key_slice(gt)
    d = dice(_box_propagate(model, image, gt, [z], z), gt)
    _expect(kind, d >= 0.8, f"3D Dice {d:.3f} (needs >= 0.8)")


def test_two_anchors_at_least_as_good_as_one(weights, volume):
    kind, model = weights
    image, labels = volume
    gt = labels == 1
    z = key_slice(gt)
    present = np.flatnonzero(gt.any(axis=(1, 2)))
    one = dice(_box_propagate(model, image, gt, [z], z), gt)
    a, b = present[len(present) // 4], present[(3 * len(present)) // 4]
    two = dice(_box_propagate(model, image, gt, [a, b], z), gt)
    _expect(kind, two >= one - 0.01 and two >= 0.8, f"two anchors {two:.3f}, one {one:.3f}")


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    return lab == (1 + int(np.argmax(ndi.sum(mask, lab, range(1, n + 1)))))


def _inner_point(mask: np.ndarray) -> tuple[int, int]:
    d = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(r), int(c)


def test_negative_click_shrinks_the_error(weights, volume):
    """A box over the organ and the neighbouring lesion 3 includes the lesion; a negative click there fixes it."""
    kind, model = weights
    image, labels = volume
    organ, lesion = labels == 1, labels == 3
    z = key_slice(lesion)  # where lesion 3 is largest
    both = organ[z] | lesion[z]
    v = View(model, image, box_of(both))
    v.session.set_box(1, z, v.box(both))
    before = v.full(v.session.segment_slice(z).masks[1])
    wrong = _largest_component(before & ~organ[z])
    err_before = int((before ^ organ[z]).sum())
    if wrong.sum() < 20:
        _expect(kind, False, f"no wrongly included region to correct ({int(wrong.sum())} px)")
        return
    v.session.add_points(1, z, [v.point(_inner_point(wrong))], [0])
    after = v.full(v.session.segment_slice(z).masks[1])
    err_after = int((after ^ organ[z]).sum())
    ok = err_after <= 0.7 * err_before and dice(after, organ[z]) >= 0.8
    _expect(kind, ok, f"error {err_before} -> {err_after} px, Dice after {dice(after, organ[z]):.3f}")


def test_later_correction_improves_following_slices_and_sticks(weights, volume):
    kind, model = weights
    image, labels = volume
    gt = labels == 1
    present = np.flatnonzero(gt.any(axis=(1, 2)))
    z0 = int(present[1])
    v = View(model, image, box_of(gt[key_slice(gt)]))
    v.session.add_points(1, z0, [v.point(_inner_point(gt[z0]))], [1])  # a weak first prompt near the organ's end
    first = v.full(run_to_end(v.session.propagate("forward")) == 1)
    later = [z for z in present if z >= z0 + 3]
    zc = min(later, key=lambda z: dice(first[z], gt[z]))  # the worst later slice
    fn, fp = _largest_component(gt[zc] & ~first[zc]), _largest_component(first[zc] & ~gt[zc])
    pts, lab = [], []
    if fn.sum() >= 5:
        pts.append(v.point(_inner_point(fn)))
        lab.append(1)
    if fp.sum() >= 5:
        pts.append(v.point(_inner_point(fp)))
        lab.append(0)
    if not pts:  # nothing to correct: the slice is already right
        pts, lab = [v.point(_inner_point(gt[zc]))], [1]
    v.session.add_points(1, zc, pts, lab)
    corrected = v.full(v.session.segment_slice(zc).masks[1])
    second = v.full(run_to_end(v.session.propagate("forward")) == 1)
    after_z = [z for z in present if z > zc]
    mean_first = float(np.mean([dice(first[z], gt[z]) for z in after_z])) if after_z else 1.0
    mean_second = float(np.mean([dice(second[z], gt[z]) for z in after_z])) if after_z else 1.0
    sticks = dice(second[zc], corrected) >= 0.99
    ok = sticks and mean_second >= mean_first and mean_second >= 0.8 and dice(corrected, gt[zc]) >= 0.8
    _expect(kind, ok, f"slices after {zc}: {mean_first:.3f} -> {mean_second:.3f}; sticks {sticks}; "
                      f"corrected slice Dice {dice(corrected, gt[zc]):.3f}")


def test_two_objects_do_not_swap_or_merge(weights):
    kind, model = weights
    image, labels = synthetic_timeseries((8, 128, 128), seed=1)
    s = Session(model, image)
    for obj in (1, 2):
        s.set_box(obj, 0, box_of(labels[0] == obj))
    pred = run_to_end(s.propagate("forward"))
    scores = {o: round(dice(pred == o, labels == o), 3) for o in (1, 2)}
    swapped = any(dice(pred[t] == a, labels[t] == b) > dice(pred[t] == a, labels[t] == a)
                  for t in range(len(pred)) for a, b in ((1, 2), (2, 1)))
    ok = min(scores.values()) >= 0.8 and not swapped
    _expect(kind, ok, f"Dice per object {scores}, swapped/merged on some frame: {swapped}")


def test_mask_prompt_reproduces_label_and_carries_it(weights, volume):
    """SAM2 returns a mask prompt as the output on its slice (so that part holds for any weights);
    the slices next to it, propagated from that mask, need trained weights."""
    kind, model = weights
    image, labels = volume
    gt = labels == 1
    z = key_slice(gt)
    v = View(model, image, box_of(gt[z]))
    v.session.set_mask(1, z, v.cut(gt[z]))
    own = dice(v.full(v.session.segment_slice(z).masks[1]), gt[z])
    assert own >= 0.9  # both weights: the mask is the output
    lo, hi = max(z - 2, 0), min(z + 3, len(gt))
    pred = v.full(run_to_end(v.session.propagate("both", start=lo, stop=hi)) == 1)
    near = [round(dice(pred[k], gt[k]), 3) for k in range(lo, hi) if k != z]
    _expect(kind, own >= 0.9 and min(near) >= 0.8, f"own slice {own:.3f}, neighbours {near}")
