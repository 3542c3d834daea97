"""LazySlices indexing matches numpy and reads only the slices it needs."""

import numpy as np
import pytest

from napari_sam2med.io import FrameStack, LazySlices


@pytest.fixture
def backing():
    return np.arange(5 * 3 * 4, dtype=np.int16).reshape(5, 3, 4)


def test_indexing_matches_numpy(backing):
    reads = []

    def read(i):
        reads.append(i)
        return backing[i]

    lazy = LazySlices(read, 5, (3, 4), np.int16)
    assert lazy.shape == (5, 3, 4) and lazy.ndim == 3 and len(lazy) == 5
    for key in (2, -1, (1, 2), (3, slice(None), 1), slice(1, 4), (slice(None, None, 2), 0),
                (..., 1), np.int64(4)):
        np.testing.assert_array_equal(lazy[key], backing[key])
    reads.clear()
    lazy[3]
    assert reads == [3]
    np.testing.assert_array_equal(np.asarray(lazy), backing)
    with pytest.raises(IndexError):
        lazy[5]


def test_wrong_slice_shape_is_reported(backing):
    lazy = LazySlices(lambda i: backing[i, :2], 5, (3, 4), np.int16)
    with pytest.raises(ValueError, match="expected"):
        lazy[0]


def test_default_window_ignores_alpha():
    rgba = np.zeros((2, 4, 4, 4), np.uint16)
    rgba[..., :3] = np.arange(16, dtype=np.uint16).reshape(4, 4)[..., None] * 10
    rgba[..., 3] = 60000
    stack = FrameStack(rgba)
    lo, hi = stack.window
    assert 0 <= lo < 5 and 145 < hi <= 150
