"""train.synthetic: deterministic, diverse volumes whose labels sit on the visible objects."""

import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam2med.train.synthetic import (
    Modality,
    ObjectKind,
    SyntheticVolumeConfig,
    make_sample,
    make_volume,
)

CFG = SyntheticVolumeConfig(shape=(16, 128, 128))


def test_deterministic_by_seed():
    a_img, a_lab = make_volume(CFG, seed=11)
    b_img, b_lab = make_volume(CFG, seed=11)
    c_img, _ = make_volume(CFG, seed=12)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)


def test_types_ids_and_sizes():
    for seed in range(8):
        s = make_sample(CFG, seed)
        assert s.image.dtype == np.uint8 and s.image.shape == CFG.shape
        assert s.labels.dtype == np.int32 and s.labels.shape == CFG.shape
        ids = sorted(set(np.unique(s.labels).tolist()) - {0})
        assert ids == list(range(1, len(ids) + 1)) == sorted(s.kinds)
        assert 1 <= len(ids) <= CFG.n_objects[1]
        counts = np.bincount(s.labels.ravel())
        assert counts[1:].min() >= CFG.min_voxels
        assert s.image.std() > 10  # not a flat image


def test_labels_sit_on_visible_objects():
    """Objects differ from their surroundings, and the labels are not shifted against the image.

    For an aligned label, the mean grey level inside it is the extreme one among copies of the
    mask shifted by -3, 0 and +3 px along y and x (measured: 8 of 11 objects; labels rolled by 2 px: 1).
    """
    contrasts, aligned, n = [], 0, 0
    cross = ndi.generate_binary_structure(3, 1)
    for seed in range(6):
        s = make_sample(CFG, seed)
        img = s.image.astype(float)
        for k in s.kinds:
            m = s.labels == k
            ring = ndi.binary_dilation(m, cross, iterations=3) & ~m & (s.labels == 0)
            if ring.sum() < 20:
                continue
            inside = img[m].mean()
            contrasts.append(abs(inside - img[ring].mean()))
            sign = np.sign(inside - img[ring].mean())
            shifted = [img[np.roll(m, d, axis=ax)].mean() for ax in (1, 2) for d in (-3, 3)]
            aligned += all(sign * (inside - v) > 0 for v in shifted)
            n += 1
    assert n >= 6
    assert np.median(contrasts) > 15  # uint8 grey levels
    assert aligned >= 0.6 * n  # big objects touching a similar neighbour may miss it; a shift misses all


def test_diversity():
    kinds, modalities = set(), set()
    for seed in range(16):
        s = make_sample(CFG, seed)
        kinds |= set(s.kinds.values())
        modalities.add(s.modality)
    assert kinds == set(ObjectKind)
    assert modalities == {Modality.CT, Modality.MR}
    assert CFG.n_distractors[0] >= 1 and CFG.max_drift > 0 and CFG.max_growth > 0  # defaults used in training


def _outside_edges(s) -> int:
    """Strong in-plane edges away from every labelled object (MR: no body outline)."""
    grad = np.stack([ndi.gaussian_gradient_magnitude(x.astype(float), 1.5) for x in s.image])
    return int(((grad > 25) & ~ndi.binary_dilation(s.labels > 0, iterations=4)).sum())


def test_distractors_look_like_objects_but_are_unlabelled():
    with_d = SyntheticVolumeConfig(shape=(8, 96, 96), n_objects=(1, 1), n_distractors=(2, 3), modality="mr")
    without = SyntheticVolumeConfig(shape=(8, 96, 96), n_objects=(1, 1), n_distractors=(0, 0), modality="mr")
    a = [_outside_edges(make_sample(with_d, seed)) for seed in range(6)]
    b = [_outside_edges(make_sample(without, seed)) for seed in range(6)]
    assert min(a) > 300 and max(b) < 50, (a, b)  # measured: 608-2805 vs 0


def test_objects_drift_through_slices():
    def shift(drift):
        cfg = SyntheticVolumeConfig(shape=(12, 96, 96), kinds=(ObjectKind.LESION,), n_objects=(1, 1),
                                    n_distractors=(0, 0), max_drift=drift)
        out = []
        for seed in range(12):
            m = make_sample(cfg, seed).labels == 1
            zs = [z for z in range(12) if m[z].sum() > 5]
            out.append(np.hypot(*(np.subtract(ndi.center_of_mass(m[zs[-1]]), ndi.center_of_mass(m[zs[0]])))))
        return np.array(out)

    moving, still = shift(1.5), shift(0.0)
    assert np.median(moving) > 3 and still.max() < 1  # measured: median 5.2 px vs at most 0.2 px


def test_lesions_are_compact_and_within_size():
    cfg = SyntheticVolumeConfig(shape=(12, 128, 128), kinds=(ObjectKind.LESION,), n_objects=(2, 3),
                                n_distractors=(0, 0))
    diam = []
    for seed in range(6):
        s = make_sample(cfg, seed)
        for k in s.kinds:
            area = (s.labels == k).sum(axis=(1, 2)).max()
            diam.append(2 * np.sqrt(area / np.pi))
            assert (s.labels == k).any(axis=(1, 2)).sum() <= 11  # a few to ten slices deep
    assert min(diam) >= 3 and max(diam) <= 55


def test_fast_and_single_slice():
    make_volume(CFG, 0)
    t0 = time.perf_counter()
    for seed in range(3):
        make_volume(CFG, seed)
    assert (time.perf_counter() - t0) / 3 < 1.0
    img, lab = make_volume(SyntheticVolumeConfig(shape=(1, 64, 64)), 3)
    assert img.shape == (1, 64, 64) and lab.max() >= 1


@pytest.mark.parametrize("bad", [dict(shape=(4, 16, 16)), dict(n_objects=(0, 2)), dict(lesion_px=(10, 5)),
                                 dict(kinds=()), dict(modality="pet")])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        SyntheticVolumeConfig(**bad)
