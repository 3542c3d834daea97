"""Pure-numpy rules: mask merging, edit history, stack geometry."""

import numpy as np
import pytest

from napari_sam2med._qt.label_edits import EXTERNAL, EditGroup, EditHistory, apply_group, merge_object_masks
from napari_sam2med._qt.stack_geometry import StackGeometry, stack_axis_choices


def test_merge_keeps_other_ids_and_replaces_own():
    current = np.array([[0, 1, 1, 5], [5, 5, 0, 0]], np.uint16)
    mask1 = np.array([[1, 0, 0, 1], [1, 0, 1, 0]], bool)
    mask2 = np.array([[1, 0, 0, 0], [0, 0, 1, 1]], bool)
    out = merge_object_masks(current, {2: mask2, 1: mask1})
    # old 1s cleared, 5s untouched, overlap 1/2 goes to the lower id
    np.testing.assert_array_equal(out, [[1, 0, 0, 5], [5, 5, 1, 2]])
    assert out.dtype == np.uint16 and current[0, 1] == 1
    with pytest.raises(ValueError, match="positive"):
        merge_object_masks(current, {0: mask1})


def test_history_levels_and_external_markers():
    data = np.zeros((3, 2, 2), int)
    history = EditHistory(max_levels=2)
    for value in (1, 2, 3):
        group = EditGroup(f"run {value}")
        group.record((value - 1,), data[value - 1], np.full((2, 2), value))
        apply_group(data, group, undo=False)
        history.push(group)
    history.push(EditGroup("empty"))  # dropped
    assert [g.title for g in history.undo_stack] == ["run 2", "run 3"]
    apply_group(data, history.pop_undo(), undo=True)
    apply_group(data, history.pop_undo(), undo=True)
    assert history.pop_undo() is None
    assert data[0].max() == 1 and data[1:].max() == 0
    apply_group(data, history.pop_redo(), undo=False)
    assert data[1].max() == 2
    history.push(EXTERNAL)
    assert history.redo_stack == [] and history.pop_undo() == EXTERNAL


def test_geometry_of_4d_layer():
    assert stack_axis_choices((2, 6, 8, 8), rgb=False) == [0, 1]
    assert stack_axis_choices((6, 8, 8, 3), rgb=True) == [0]
    with pytest.raises(ValueError, match="2D RGB"):
        stack_axis_choices((8, 8, 3), rgb=True)
    geo = StackGeometry.from_layer((2, 6, 8, 8), False, stack_axis=1, point=(1.2, 3.0, 0, 0))
    assert geo.n_slices == 6 and geo.fixed == ((0, 1),) and geo.full_index(4) == (1, 4)
    data = np.arange(2 * 6 * 8 * 8).reshape(2, 6, 8, 8)
    frames = geo.frames(data)
    assert frames.shape == (6, 8, 8)
    np.testing.assert_array_equal(np.asarray(frames[4]), data[1, 4])
    assert geo.on_this_plane((1, 2, 3, 3)) and not geo.on_this_plane((0, 2, 3, 3))
