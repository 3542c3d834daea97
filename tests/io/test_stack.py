"""FrameStack: shapes, laziness, normalisation and input validation."""

import numpy as np
import pytest
import zarr

from napari_sam2med.io import FrameStack


class CountingArray:
    """Array-like that records which frames were read."""

    def __init__(self, data):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key[0] if isinstance(key, tuple) else key)
        return self._data[key]


def test_shapes_and_properties():
    data = np.zeros((5, 6, 7), np.uint8)
    stack = FrameStack(data, name="vol")
    assert stack.shape == (5, 6, 7)
    assert stack.frame_shape == (6, 7)
    assert len(stack) == 5
    assert stack.dtype == np.uint8
    assert stack.window == (0.0, 255.0)
    assert stack.name == "vol"
    assert stack.raw(2).shape == (6, 7)


def test_uint8_normalisation_is_exactly_x_over_255():
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    out = FrameStack(values).normalized(0)
    expected = (values[0] / 255.0).astype(np.float32)  # SAM2's own preprocessing
    assert out.dtype == np.float32 and out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 1], out[..., 2])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_uint16_window_mapping_and_clipping():
    data = np.array([[[0, 100, 150, 200, 1000]]], dtype=np.uint16)
    stack = FrameStack(data, window=(100, 200))
    out = stack.normalized(0)[0, :, 0]
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    assert stack.window == (100.0, 200.0)


def test_default_window_uses_robust_percentiles():
    rng = np.random.default_rng(0)
    data = rng.integers(1000, 2000, size=(4, 32, 32)).astype(np.uint16)
    data[0, 0, 0] = 60000  # a single outlier must not stretch the window
    lo, hi = FrameStack(data).window
    assert 1000 <= lo < 1020 and 1980 < hi <= 2000
    out = FrameStack(data).normalized(1)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_default_window_reads_at_most_16_slices():
    data = CountingArray(np.arange(200 * 4 * 4, dtype=np.float32).reshape(200, 4, 4))
    stack = FrameStack(data)
    assert data.reads == []  # construction reads nothing
    lo, hi = stack.window
    assert len(set(data.reads)) <= 16 and 0 in data.reads and 199 in data.reads
    assert lo < hi


def test_zarr_backed_stack_reads_only_requested_slices(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, size=(200, 8, 9)).astype(np.uint8)
    store = zarr.create_array(store=str(tmp_path / "v.zarr"), shape=data.shape,
                              dtype=data.dtype, chunks=(1, 8, 9))
    store[:] = data
    counting = CountingArray(zarr.open_array(str(tmp_path / "v.zarr"), mode="r"))
    stack = FrameStack(counting)
    np.testing.assert_array_equal(stack.raw(137), data[137])
    np.testing.assert_array_equal(stack.normalized(3)[..., 1], data[3] / np.float32(255))
    assert counting.reads == [137, 3]


def test_rgb_and_rgba_and_single_channel():
    rgb = np.random.default_rng(2).integers(0, 255, size=(2, 4, 5, 3)).astype(np.uint8)
    out = FrameStack(rgb).normalized(1)
    np.testing.assert_array_equal(out, rgb[1] / np.float32(255))

    rgba = np.concatenate([rgb, np.full((2, 4, 5, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(FrameStack(rgba).normalized(0), rgb[0] / np.float32(255))

    single = rgb[..., :1]
    stack = FrameStack(single)
    assert stack.raw(0).shape == (4, 5)
    np.testing.assert_array_equal(stack.normalized(0)[..., 2], rgb[0, ..., 0] / np.float32(255))


def test_channel_axis_first():
    rgb = np.random.default_rng(3).integers(0, 255, size=(3, 6, 4, 5)).astype(np.uint8)  # (C,N,Y,X)
    stack = FrameStack(rgb, channel_axis=0)
    assert stack.shape == (6, 4, 5)
    np.testing.assert_array_equal(stack.raw(2), np.moveaxis(rgb[:, 2], 0, -1))


def test_dask_input_is_supported():
    da = pytest.importorskip("dask.array")
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    stack = FrameStack(da.from_array(data, chunks=(1, 4, 5)), window=(0, 59))
    np.testing.assert_allclose(stack.normalized(2)[..., 0], data[2] / 59, rtol=1e-6)


def test_index_errors():
    stack = FrameStack(np.zeros((3, 4, 4), np.uint8))
    for bad in (-1, 3, 100):
        with pytest.raises(IndexError):
            stack.raw(bad)
    with pytest.raises(IndexError):
        stack.normalized(3)
    with pytest.raises(TypeError):
        stack.raw(1.0)


@pytest.mark.parametrize(
    "data, match",
    [
        (np.zeros((4, 5), np.uint8), "2D"),
        (np.zeros((2, 3, 4, 5, 6), np.uint8), "shape"),
        (np.zeros((5,), np.uint8), "shape"),
        (np.zeros((3, 4, 4), bool), "boolean"),
        (np.zeros((3, 4, 4), np.complex64), "complex"),
        (np.zeros((0, 4, 4), np.uint8), "empty"),
        (np.zeros((3, 4, 4, 2), np.uint8), "channels"),
        (np.array([[["a"]]]), "dtype"),
    ],
)
def test_bad_inputs_raise_value_error(data, match):
    with pytest.raises(ValueError, match=match):
        FrameStack(data)


def test_bad_window_and_channel_axis():
    data = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="lo < hi"):
        FrameStack(data, window=(5, 5))
    with pytest.raises(ValueError, match="pair"):
        FrameStack(data, window=(1, 2, 3))
    with pytest.raises(ValueError, match="channel_axis"):
        FrameStack(data, channel_axis=0)
    with pytest.raises(ValueError, match="nan_policy"):
        FrameStack(data, nan_policy="ignore")


def test_nan_raises_by_default_and_maps_to_low_when_asked():
    data = np.ones((2, 3, 3), np.float32)
    data[1, 0, 0] = np.nan
    stack = FrameStack(data, window=(0, 2))
    np.testing.assert_allclose(stack.normalized(0), 0.5)  # slice without NaN is fine
    with pytest.raises(ValueError, match="NaN"):
        stack.normalized(1)
    out = FrameStack(data, window=(0, 2), nan_policy="zero").normalized(1)
    assert out[0, 0, 0] == 0.0 and out[1, 1, 0] == pytest.approx(0.5)


def test_constant_stack_gets_a_usable_window():
    stack = FrameStack(np.full((3, 4, 4), 7, np.int16))
    lo, hi = stack.window
    assert lo == 7.0 and hi > lo
    assert np.all(stack.normalized(0) == 0.0)
