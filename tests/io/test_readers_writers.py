"""Round trips through every supported format, and atomic writes."""

import os

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2med.io import (
    FrameStack,
    open_stack,
    read_array,
    read_spacing,
    write_array,
    write_labels,
)


@pytest.fixture
def volume():
    return np.random.default_rng(0).integers(0, 4000, size=(6, 10, 12)).astype(np.uint16)


@pytest.fixture
def labels():
    lab = np.zeros((5, 8, 9), np.int32)
    lab[1:4, 2:6, 3:7] = 70000  # needs more than 16 bits: dtype must be kept exactly
    lab[2, 0, 0] = 3
    return lab


def test_tiff_round_trip_is_lazy_zarr(tmp_path, volume):
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, volume, compression="zlib")
    array = read_array(path)
    assert isinstance(array, zarr.Array) and array.shape == volume.shape
    stack = open_stack(path, window=(0, 4000))
    assert stack.name == "vol" and stack.shape == (6, 10, 12)
    np.testing.assert_array_equal(stack.raw(4), volume[4])
    np.testing.assert_allclose(stack.normalized(4)[..., 0], volume[4] / 4000, rtol=1e-6)


def test_npy_round_trip_is_memmapped(tmp_path, volume):
    path = write_array(tmp_path / "vol.npy", volume)
    array = read_array(path)
    assert isinstance(array, np.memmap)
    np.testing.assert_array_equal(array, volume)
    assert read_spacing(path) == (1.0, 1.0, 1.0)


def test_zarr_array_and_groups(tmp_path, volume):
    write_array(tmp_path / "a.zarr", volume, scale=(2.0, 0.5, 0.25))
    np.testing.assert_array_equal(read_array(tmp_path / "a.zarr")[:], volume)
    assert read_spacing(tmp_path / "a.zarr") == (2.0, 0.5, 0.25)

    group = zarr.open_group(str(tmp_path / "one.zarr"), mode="w")
    group.create_array("only", data=volume)
    np.testing.assert_array_equal(read_array(tmp_path / "one.zarr")[2], volume[2])

    ome = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    ome.create_array("s0", data=volume[None, None])  # (t, c, z, y, x)
    ome.create_array("s1", data=volume[None, None, :, ::2, ::2])
    ome.attrs["multiscales"] = [{
        "datasets": [
            {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 3, 2, 2]}]},
            {"path": "s1"},
        ]
    }]
    stack = open_stack(tmp_path / "ome.zarr")
    assert stack.shape == volume.shape
    np.testing.assert_array_equal(stack.raw(5), volume[5])
    assert read_spacing(tmp_path / "ome.zarr") == (3.0, 2.0, 2.0)

    two = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    two.create_array("a", data=volume)
    two.create_array("b", data=volume)
    with pytest.raises(ValueError, match="exactly one array"):
        read_array(tmp_path / "two.zarr")


def test_nifti_round_trip_transposes_and_keeps_spacing(tmp_path, volume):
    nibabel = pytest.importorskip("nibabel")
    xyz = np.ascontiguousarray(volume.transpose(2, 1, 0))  # nibabel order (X, Y, Z)
    image = nibabel.Nifti1Image(xyz, affine=np.diag([0.7, 0.8, 2.5, 1.0]))
    path = tmp_path / "ct.nii.gz"
    nibabel.save(image, str(path))
    stack = open_stack(path)
    assert stack.name == "ct"
    assert stack.shape == volume.shape and stack.dtype == volume.dtype
    for z in (0, 3, 5):
        np.testing.assert_array_equal(stack.raw(z), volume[z])
    np.testing.assert_array_equal(np.asarray(read_array(path)), volume)
    assert read_spacing(path) == pytest.approx((2.5, 0.8, 0.7))


@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".zarr"])
def test_write_labels_round_trip_keeps_dtype(tmp_path, labels, suffix):
    path = write_labels(tmp_path / f"labels{suffix}", labels, scale=(3.0, 1.0, 0.5))
    back = np.asarray(read_array(path)[:])
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, labels)
    assert read_spacing(path) == (3.0, 1.0, 0.5)
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temp left behind


def test_tiff_labels_are_zlib_compressed(tmp_path, labels):
    path = write_labels(tmp_path / "l.tif", labels.astype(np.uint16))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.series[0].dtype == np.uint16


def test_write_labels_overwrites_existing_zarr(tmp_path, labels):
    path = tmp_path / "l.zarr"
    write_labels(path, labels)
    write_labels(path, labels * 0 + 5)
    assert np.all(read_array(path)[:] == 5)
    assert sorted(os.listdir(tmp_path)) == ["l.zarr"]


def test_write_labels_from_bool_and_lazy_zarr(tmp_path, labels):
    path = write_labels(tmp_path / "mask.tif", labels > 0)
    back = read_array(path)[:]
    assert back.dtype == np.uint8 and back.sum() == (labels > 0).sum()
    src = zarr.create_array(store=str(tmp_path / "src.zarr"), shape=labels.shape,
                            dtype=labels.dtype, chunks=(1, 8, 9))
    src[:] = labels
    np.testing.assert_array_equal(read_array(write_labels(tmp_path / "c.zarr", src))[:], labels)


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_atomic_write_leaves_nothing_on_failure(tmp_path, labels, monkeypatch, suffix):
    target = tmp_path / f"out{suffix}"
    if suffix == ".tif":
        def broken(path, data, **kwargs):
            with open(path, "wb") as handle:
                handle.write(b"II*\x00partial")
            raise OSError("disk full")
        monkeypatch.setattr(tifffile, "imwrite", broken)
    else:
        real_setitem = zarr.Array.__setitem__
        calls = []

        def broken(self, key, value):
            calls.append(key)
            real_setitem(self, key, value)
            raise OSError("disk full")
        monkeypatch.setattr(zarr.Array, "__setitem__", broken)
    with pytest.raises(OSError, match="disk full"):
        write_labels(target, labels)
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_previous_file(tmp_path, labels, monkeypatch):
    target = write_labels(tmp_path / "keep.tif", labels)

    def broken(path, data, **kwargs):
        raise OSError("boom")
    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError):
        write_labels(target, labels * 0)
    monkeypatch.undo()
    np.testing.assert_array_equal(read_array(target)[:], labels)
    assert os.listdir(tmp_path) == ["keep.tif"]


def test_missing_and_unknown_and_corrupt_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_array(tmp_path / "nope.tif")
    with pytest.raises(FileNotFoundError):
        open_stack(tmp_path / "nope.nii.gz")
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_array(tmp_path / "a.png")
    for name in ("bad.tif", "bad.npy", "bad.nii.gz"):
        (tmp_path / name).write_bytes(b"this is not an image at all" * 10)
        with pytest.raises(ValueError, match="cannot read"):
            read_array(tmp_path / name)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match="no readable DICOM"):
        read_array(empty_dir)


def test_bad_writer_inputs(tmp_path, labels):
    with pytest.raises(ValueError, match="use one of"):
        write_labels(tmp_path / "l.png", labels)
    with pytest.raises(ValueError, match="integer dtype"):
        write_labels(tmp_path / "l.tif", labels.astype(np.float32))
    with pytest.raises(ValueError, match="scale"):
        write_labels(tmp_path / "l.tif", labels, scale=(1.0, 2.0))
    with pytest.raises(FileNotFoundError):
        write_labels(tmp_path / "missing" / "l.tif", labels)
    assert os.listdir(tmp_path) == []


def test_open_stack_passes_options(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 255, size=(3, 6, 7, 3)).astype(np.uint8)
    path = write_array(tmp_path / "rgb.tif", rgb)
    stack = open_stack(path, name="custom")
    assert isinstance(stack, FrameStack) and stack.name == "custom"
    assert stack.shape == (3, 6, 7) and stack.n_channels == 3
    np.testing.assert_array_equal(stack.normalized(2), rgb[2] / np.float32(255))
