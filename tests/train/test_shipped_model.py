"""Behaviour of the shipped ``sam2med-small-ct`` weights (issue 18) on synthetic volumes it never saw.

Each check is a measured figure compared with a threshold; the last test runs every check with random
weights and asserts that each one fails there, so none of them can pass by construction. Inference is
the crop-around-the-prompt mode the model was trained for (``train/crop.py``), through ``engine.Session``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2med.engine import Session, run_to_end
from napari_sam2med.engine.metrics import dice
from napari_sam2med.sam2 import build_model, get_config
from napari_sam2med.train.crop import cut, paste, window_from_box
from napari_sam2med.train.synthetic import SyntheticVolumeConfig, make_volume

NAME = "sam2med-small-ct"
SEEDS = (990001, 990002, 990003)  # never used in training (training seeds 1000+ / 500000+, validation 900000+)
CONTEXT = 3.0

# Thresholds: a margin below what the v1 weights measure on these 6 objects (3D 0.307, prompted slice 0.527,
# mask-prompt neighbours 0.370; models/SAM2MED_SMALL_CT_MODEL_CARD.md). Far below issue 18's goal (0.8): they
# pin the current model's behaviour and fail with random weights, they do not certify a good model.
BOX_3D = 0.25
BOX_SLICE = 0.45
MASK_NEIGHBOURS = 0.30


@pytest.fixture(scope="module")
def shipped():
    from napari_sam2med.sam2 import load_model

    try:
        model = load_model(NAME, device="cpu", offline=True, progress=False)
    except (FileNotFoundError, ValueError) as err:
        pytest.skip(f"shipped weights not available: {err}")
    return model.eval()


@pytest.fixture(scope="module")
def volumes():
    cfg = SyntheticVolumeConfig(shape=(16, 128, 128))
    out = []
    for seed in SEEDS:
        image, labels = make_volume(cfg, seed=seed)
        for oid in sorted(set(np.unique(labels)) - {0})[:2]:
            out.append((image, labels == oid))
    return out


def _box(mask2d):
    rows, cols = np.nonzero(mask2d)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def _session(model, image, gt, z):
    """A Session on the crop window around the object's box on slice ``z``."""
    r0, c0, r1, c1 = _box(gt[z])
    win = window_from_box((r0, c0, r1 + 1, c1 + 1), CONTEXT, 32, image.shape[1:])
    return Session(model, cut(image, win, axes=(1, 2))), win, cut(gt, win, axes=(1, 2))


def _run(session, win, shape):
    labels = run_to_end(session.propagate(direction="both")) == 1
    return np.stack([paste(labels[k], win, shape) for k in range(len(labels))])


def _key(gt):
    return int(np.argmax(gt.reshape(len(gt), -1).sum(1)))


def box_scores(model, volumes):
    """Mean 3D Dice and prompted-slice Dice: box on the largest slice, propagated both ways."""
    d3, d2 = [], []
    with torch.no_grad():
        for image, gt in volumes:
            z = _key(gt)
            s, win, sub = _session(model, image, gt, z)
            s.set_box(1, z, _box(sub[z]))
            pred = _run(s, win, gt.shape[1:])
            d3.append(dice(pred, gt))
            d2.append(dice(pred[z], gt[z]))
    return float(np.mean(d3)), float(np.mean(d2))


def two_anchor_gain(model, volumes):
    """3D Dice with boxes on the largest slice and on a second slice, minus with one box."""
    one, two = [], []
    with torch.no_grad():
        for image, gt in volumes:
            z = _key(gt)
            present = np.flatnonzero(gt.reshape(len(gt), -1).any(1))
            z2 = int(present[-1] if present[-1] - z > z - present[0] else present[0])
            s, win, sub = _session(model, image, gt, z)
            s.set_box(1, z, _box(sub[z]))
            one.append(dice(_run(s, win, gt.shape[1:]), gt))
            if sub[z2].any():
                s.set_box(1, z2, _box(sub[z2]))
            two.append(dice(_run(s, win, gt.shape[1:]), gt))
    return float(np.mean(two)), float(np.mean(one))


def mask_neighbours(model, volumes):
    """Mean Dice on the slices next to a ground-truth mask prompt (not on the prompted slice itself)."""
    out = []
    with torch.no_grad():
        for image, gt in volumes:
            z = _key(gt)
            s, win, sub = _session(model, image, gt, z)
            s.set_mask(1, z, sub[z])
            pred = _run(s, win, gt.shape[1:])
            near = [k for k in (z - 1, z + 1) if 0 <= k < len(gt) and gt[k].any()]
            out += [dice(pred[k], gt[k]) for k in near]
    return float(np.mean(out))


def negative_click_effect(model, volumes):
    """(false positives before, after) a negative click on the largest wrongly included component."""
    from scipy import ndimage as ndi

    before, after = 0, 0
    with torch.no_grad():
        for image, gt in volumes:
            z = _key(gt)
            s, win, sub = _session(model, image, gt, z)
            s.set_box(1, z, _box(sub[z]))
            pred = s.segment_slice(z).masks[1]
            fp = pred & ~sub[z]
            lab, n = ndi.label(fp)
            if n == 0:
                continue
            biggest = 1 + int(np.argmax(ndi.sum(fp, lab, range(1, n + 1))))
            dist = ndi.distance_transform_edt(lab == biggest)
            click = np.unravel_index(int(np.argmax(dist)), dist.shape)
            s.add_points(1, z, [click], [0])
            pred2 = s.segment_slice(z).masks[1]
            before += int(fp.sum())
            after += int((pred2 & ~sub[z]).sum())
    return before, after


def test_weights_file_small_fp16_pinned(shipped):
    from napari_sam2med.sam2.checkpoint import load_state_dict, sha256_of
    from napari_sam2med.sam2.configs import get_config as cfg_of
    from napari_sam2med.sam2.weights import WeightsSpec  # noqa: F401  (the registry's weights type)

    spec = cfg_of(NAME).weights
    assert spec is not None and spec.sha256 and spec.url.startswith("package:")
    import importlib.resources

    path = importlib.resources.files("napari_sam2med").joinpath(spec.url[len("package:"):])
    assert path.is_file() and path.stat().st_size <= 25 * 2**20
    assert sha256_of(path) == spec.sha256
    sd = load_state_dict(path)  # weights_only
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())


def test_box_propagation(shipped, volumes):
    d3, d2 = box_scores(shipped, volumes)
    assert d2 >= BOX_SLICE and d3 >= BOX_3D, (d3, d2)


def test_two_anchors_at_least_as_good(shipped, volumes):
    two, one = two_anchor_gain(shipped, volumes)
    assert two >= one - 0.02 and two >= BOX_3D, (two, one)


def test_mask_prompt_carries_to_neighbours(shipped, volumes):
    assert mask_neighbours(shipped, volumes) >= MASK_NEIGHBOURS


def test_negative_click_shrinks_false_positives(shipped, volumes):
    before, after = negative_click_effect(shipped, volumes)
    assert before > 0, "no wrongly included region to correct"
    assert after < before, (before, after)


def test_every_check_fails_with_random_weights(volumes):
    torch.manual_seed(0)
    model = build_model(get_config(NAME)).eval()
    d3, d2 = box_scores(model, volumes)
    assert d2 < BOX_SLICE and d3 < BOX_3D
    two, _ = two_anchor_gain(model, volumes)
    assert two < BOX_3D
    assert mask_neighbours(model, volumes) < MASK_NEIGHBOURS
    before, after = negative_click_effect(model, volumes)
    assert before == 0 or after >= before
