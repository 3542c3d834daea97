"""End-to-end pipelines with a random-init tiny model: structure only, no accuracy claims."""

import numpy as np
import pytest

from napari_sam2med.engine.progress import run_to_end
from napari_sam2med.octa import pipeline as P
from napari_sam2med.octa.objects import split_vessels
from napari_sam2med.octa.prompts import PromptConfig


def _check_labels(result, shape, object_ids):
    data, meta, kind = result
    assert kind == "labels" and data.shape == shape and data.dtype == np.int32
    assert meta["metadata"]["object_ids"] == object_ids
    assert set(np.unique(data)) <= {0, *object_ids}


def test_layer_sequence_rv(tiny_model, synthetic_case):
    cfg = P.OctaConfig(task="rv", prompts=PromptConfig(n_pos=2, n_neg=2), min_size=10)
    steps = []
    result = run_to_end(on_step=steps.append, gen=P.run_layer_sequence(tiny_model, synthetic_case.images,
                                               synthetic_case.vessels[1] > 0, 1, cfg))
    prop = [s for s in steps if s.stage == "propagate"]
    assert len(prop) == 4 and sorted(s.layer for s in prop) == [0, 1, 2, 3]
    assert [s.done for s in prop] == [1, 2, 3, 4] and prop[0].layer == 1  # starts at the prompt
    ids = list(range(1, synthetic_case.n_vessels + 1))  # one object per drawn vessel tree
    _check_labels(result[0], synthetic_case.images.shape, ids)
    assert result[0][1]["name"] == "OCTA RV"


def test_layer_sequence_faz_one_object(tiny_model, synthetic_case):
    cfg = P.OctaConfig(task="faz")
    result = run_to_end(P.run_layer_sequence(tiny_model, synthetic_case.images, synthetic_case.faz[0], 0, cfg))
    _check_labels(result[0], synthetic_case.images.shape, [1])


def test_sparse_masks(tiny_model, synthetic_case):
    objs = split_vessels(synthetic_case.vessels[0] > 0, min_size=10)
    ann = {0: objs, 3: np.where(np.isin(objs, [1, 2]), objs, 0)}
    steps = []
    result = run_to_end(on_step=steps.append, gen=P.run_sparse(tiny_model, synthetic_case.images, ann, P.OctaConfig()))
    assert len(steps) == 4
    _check_labels(result[0], synthetic_case.images.shape, [1, 2, 3, 4])
    assert result[0][1]["metadata"]["prompt_layers"] == [0, 3]
    with pytest.raises(ValueError, match="does not fit"):
        run_to_end(P.run_sparse(tiny_model, synthetic_case.images, {9: objs}, P.OctaConfig()))


def test_projection_mode_fuses(tiny_model, synthetic_case):
    proj = synthetic_case.images[:3]
    steps = []
    result = run_to_end(on_step=steps.append, gen=P.run_projection(tiny_model, proj, synthetic_case.faz[0], P.OctaConfig(task="faz")))
    assert steps[-1].stage == "fuse"
    fused, per_frame = result[0][0], result[1][0]
    assert fused.shape == proj.shape[1:] and per_frame.shape == proj.shape
    np.testing.assert_array_equal(fused, P.fuse_majority(per_frame))
    with pytest.raises(ValueError, match="3 frames"):
        run_to_end(P.run_projection(tiny_model, synthetic_case.images, synthetic_case.faz[0], P.OctaConfig()))


def test_manual_clicks(tiny_model, synthetic_case):
    clicks = [(1, 2, 48.0, 48.0, 1), (1, 2, 10.0, 10.0, 0), (5, 0, 20.0, 70.0, 1)]
    steps = []
    result = run_to_end(on_step=steps.append, gen=P.run_manual(tiny_model, synthetic_case.images, clicks, P.OctaConfig(task="faz")))
    assert len(steps) == 4
    _check_labels(result[0], synthetic_case.images.shape, [1, 5])
    with pytest.raises(ValueError, match="outside"):
        run_to_end(P.run_manual(tiny_model, synthetic_case.images, [(1, 7, 1.0, 1.0, 1)], P.OctaConfig()))


def test_fuse_majority_by_hand():
    a = np.array([[1, 1, 2, 0]])
    b = np.array([[1, 0, 3, 2]])
    c = np.array([[0, 0, 4, 2]])
    np.testing.assert_array_equal(P.fuse_majority(np.stack([a, b, c])), [[1, 0, 0, 2]])


def test_bad_inputs(tiny_model, synthetic_case):
    with pytest.raises(ValueError, match="ref_layer"):
        run_to_end(P.run_layer_sequence(tiny_model, synthetic_case.images, synthetic_case.faz[0], 9, P.OctaConfig()))
    with pytest.raises(ValueError, match="no object"):
        run_to_end(P.run_layer_sequence(tiny_model, synthetic_case.images,
                                   np.zeros((96, 96), bool), 0, P.OctaConfig()))
    with pytest.raises(ValueError, match="task"):
        P.OctaConfig(task="vessels")
