import numpy as np
import pytest

from napari_sam2med.octa.objects import faz_object, objects_for_task, split_vessels


def test_vessel_clusters_match_drawn_trees(synthetic_case):
    for layer in range(synthetic_case.images.shape[0]):
        labels = split_vessels(synthetic_case.vessels[layer] > 0, min_size=10)
        assert labels.dtype == np.int32 and labels.max() == synthetic_case.n_vessels
        # each found object is exactly one drawn tree
        for k in range(1, labels.max() + 1):
            assert len(np.unique(synthetic_case.vessels[layer][labels == k])) == 1


def test_colour_map_and_min_size():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[2:4, 2:12] = (255, 0, 0)      # 20 px red
    rgb[10:12, 2:12] = (255, 0, 0)    # second red component, 20 px
    rgb[6:8, 14:19] = (0, 0, 255)     # 10 px blue, touching nothing
    rgb[15, 15] = (0, 255, 0)         # 1 px green
    labels = split_vessels(rgb, min_size=5)
    assert labels.max() == 3
    assert sorted(np.bincount(labels.ravel())[1:]) == [10, 20, 20]
    assert split_vessels(rgb, min_size=15).max() == 2
    assert split_vessels(rgb, min_size=5, split_components=False).max() == 2
    # touching vessels of different colours stay different objects
    rgb[4:10, 5] = (0, 0, 255)
    assert split_vessels(rgb, min_size=5).max() == 4


def test_faz_object_keeps_largest():
    mask = np.zeros((10, 10), bool)
    mask[1:5, 1:5] = True
    mask[8, 8] = True
    out = faz_object(mask)
    assert out.max() == 1 and out.sum() == 16 and out[8, 8] == 0
    assert objects_for_task(mask, "faz").sum() == 16
    with pytest.raises(ValueError):
        objects_for_task(mask, "bogus")
