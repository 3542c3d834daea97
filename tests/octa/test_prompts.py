import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam2med.octa.prompts import (
    PromptConfig,
    negative_ring,
    object_prompts,
    prompts_from_labels,
    snapped_centroid,
)


def c_shape():
    m = np.zeros((30, 30), bool)
    m[5:25, 5:9] = True     # left bar
    m[5:9, 5:22] = True     # top bar
    m[21:25, 5:22] = True   # bottom bar
    return m


def test_centroid_inside_is_kept():
    m = np.zeros((9, 9), bool)
    m[2:7, 2:7] = True
    assert snapped_centroid(m) == (4, 4)


def test_c_shape_centroid_snaps_inside():
    m = c_shape()
    r, c = ndi.center_of_mass(m)
    assert not m[round(r), round(c)]  # raw centroid is in the hole
    sr, sc = snapped_centroid(m)
    assert m[sr, sc]
    # nearest inside pixel: no object pixel is closer to the centroid
    d = np.hypot(*(np.argwhere(m) - [round(r), round(c)]).T).min()
    assert np.hypot(sr - round(r), sc - round(c)) == pytest.approx(d)
    with pytest.raises(ValueError):
        snapped_centroid(np.zeros((3, 3), bool))


def test_counts_positions_and_seed():
    labels = np.zeros((60, 60), np.int32)
    labels[10:20, 10:20] = 1
    labels[35:50, 30:55] = 2
    cfg = PromptConfig(n_pos=4, n_neg=5, ring_gap=2, ring_width=3, seed=7)
    prompts = prompts_from_labels(labels, cfg)
    assert sorted(prompts) == [1, 2]
    for obj_id, p in prompts.items():
        obj = labels == obj_id
        pos, neg = p.positives.astype(int), p.negatives.astype(int)
        assert len(pos) == 4 and len(neg) == 5
        assert obj[pos[:, 0], pos[:, 1]].all()
        assert len({tuple(x) for x in pos}) == 4  # distinct
        ring = negative_ring(obj, 2, 3)
        assert ring[neg[:, 0], neg[:, 1]].all()
        assert (labels[neg[:, 0], neg[:, 1]] == 0).all()
        # negatives keep the gap: > 2 px (chessboard) from the object
        dist = ndi.distance_transform_cdt(~obj, metric="chessboard")
        assert (dist[neg[:, 0], neg[:, 1]] > 2).all() and (dist[neg[:, 0], neg[:, 1]] <= 5).all()
    again = prompts_from_labels(labels, cfg)
    np.testing.assert_array_equal(again[2].points, prompts[2].points)
    other = prompts_from_labels(labels, PromptConfig(n_pos=4, n_neg=5, ring_gap=2, ring_width=3, seed=8))
    assert not np.array_equal(other[2].points, prompts[2].points)


def test_one_positive_per_component_first():
    m = np.zeros((40, 40), bool)
    m[2:7, 2:7] = True      # 25 px, centroid (4, 4)
    m[20:31, 20:31] = True  # 121 px, centroid (25, 25)
    p = object_prompts(m, PromptConfig(n_pos=2, n_neg=0), np.random.default_rng(0))
    np.testing.assert_array_equal(p.positives, [[25, 25], [4, 4]])  # largest first, rounded centroids
    assert len(p.negatives) == 0


def test_config_validation():
    with pytest.raises(ValueError):
        PromptConfig(n_pos=0)
    with pytest.raises(ValueError):
        PromptConfig(ring_width=0)


@pytest.mark.shared_data
def test_real_vessel_objects_and_c_shaped_region():
    from napari_sam2med.octa import datasets as ds
    from napari_sam2med.octa.objects import split_vessels

    from .conftest import LAYER_SEQ, need

    seq = ds.read_layer_sequence(need(LAYER_SEQ / "RV_LayerSequence" / "10301"))
    objects = split_vessels(seq.objects[-1], min_size=20)
    prompts = prompts_from_labels(objects, PromptConfig(n_pos=3, n_neg=3, seed=1))
    assert sorted(prompts) == list(range(1, objects.max() + 1))
    for obj_id, p in prompts.items():
        pos, neg = p.positives.astype(int), p.negatives.astype(int)
        assert (objects[pos[:, 0], pos[:, 1]] == obj_id).all()
        assert (objects[neg[:, 0], neg[:, 1]] == 0).all() and len(neg) == 3
    # RV_Annotation's region mask is C-shaped: its centroid lies outside and must snap inside
    _, region = ds.read_two_panel(LAYER_SEQ / "RV_Annotation" / "10460_265.png")
    region = region > 127
    r, c = ndi.center_of_mass(region)
    assert not region[round(r), round(c)]
    sr, sc = snapped_centroid(region)
    assert region[sr, sc]
