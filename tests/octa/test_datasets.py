import numpy as np
import pytest

from napari_sam2med.octa import datasets as ds
from napari_sam2med.octa.synthetic import write_layer_sequence_folder

from .conftest import LAYER_SEQ, PROJ_3D, need


def test_split_panels_counts_from_width():
    comp = np.zeros((8, 32, 3), np.uint8)
    comp[:, 8:16] = 1
    panels = ds.split_panels(comp)
    assert len(panels) == 4 and all(p.shape == (8, 8, 3) for p in panels)
    assert panels[1].min() == 1 and panels[0].max() == 0
    with pytest.raises(ValueError, match="multiple"):
        ds.split_panels(np.zeros((8, 20)))


def test_read_faz_sequence_synthetic(tmp_path, synthetic_case):
    write_layer_sequence_folder(tmp_path / "faz", synthetic_case, "faz", first_layer=8)
    seq = ds.read_layer_sequence(tmp_path / "faz")
    assert seq.task == "faz" and seq.layer_names == ["8", "9", "10", "11"]  # numeric order
    np.testing.assert_array_equal(seq.images, synthetic_case.images)
    np.testing.assert_array_equal(seq.masks, synthetic_case.faz)


def test_read_rv_sequence_synthetic(tmp_path, synthetic_case):
    write_layer_sequence_folder(tmp_path / "rv", synthetic_case, "rv")
    seq = ds.read_layer_sequence(tmp_path / "rv")
    assert seq.task == "rv" and len(seq) == 4
    np.testing.assert_array_equal(seq.images, synthetic_case.images)
    np.testing.assert_array_equal(seq.masks, synthetic_case.vessels > 0)
    np.testing.assert_array_equal(seq.objects, synthetic_case.vessels)  # NN.png -> id NN + 1
    assert seq.regions.shape == seq.images.shape and (seq.regions >= seq.masks).all()


def test_read_layer_sequence_rejects_bad_input(tmp_path, synthetic_case):
    with pytest.raises(FileNotFoundError):
        ds.read_layer_sequence(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no layer PNGs"):
        ds.read_layer_sequence(tmp_path / "empty")
    write_layer_sequence_folder(tmp_path / "faz", synthetic_case, "faz")
    with pytest.raises(ValueError, match="needs 4"):
        ds.read_layer_sequence(tmp_path / "faz", task="rv")


def test_read_stack_tiff(tmp_path, synthetic_case):
    import tifffile

    tifffile.imwrite(tmp_path / "s.tif", synthetic_case.images)
    np.testing.assert_array_equal(ds.read_stack(tmp_path / "s.tif"), synthetic_case.images)


@pytest.mark.shared_data
def test_real_rv_sequence():
    seq = ds.read_layer_sequence(need(LAYER_SEQ / "RV_LayerSequence" / "10301"))
    assert seq.images.shape == (10, 512, 512) and seq.layer_names[0] == "237"
    assert seq.masks.any(axis=(1, 2)).all()
    # every per-vessel object lies on the green vessel overlay
    assert seq.objects is not None and (seq.masks[seq.objects > 0]).all()
    ids = sorted(np.unique(seq.objects[-1]))[1:]
    assert ids == [1, 2, 3, 5, 7, 9, 10]  # 246/objects.npy = [0 1 2 4 6 8 9]
    # the binary half of ref_mask equals the vessel overlay of the composite
    ref_bin, _ = ds.read_two_panel(LAYER_SEQ / "RV_LayerSequence" / "10301" / "ref_mask" / "246.png")
    np.testing.assert_array_equal(ref_bin[..., 0] > 127, seq.masks[-1])


@pytest.mark.shared_data
def test_real_faz_sequence():
    seq = ds.read_layer_sequence(need(LAYER_SEQ / "FAZ_LayerSequence" / "10301"))
    assert seq.task == "faz" and seq.images.shape == (11, 512, 512)
    area = seq.masks.sum(axis=(1, 2))
    assert (area > 1000).all() and (area < 30000).all()
    # the FAZ is dark in the image
    assert seq.images[seq.masks].mean() < seq.images[~seq.masks].mean()


@pytest.mark.shared_data
def test_real_projections_and_gt():
    root = need(PROJ_3D / "OCTA_3M")
    proj = ds.read_projections(root, "10301")
    assert proj.images.shape == (3, 304, 304) and proj.images.dtype == np.uint8
    oct_proj = ds.read_projections(root, "10301", modality="OCT")
    assert not np.array_equal(oct_proj.images, proj.images)
    for name in ds.GT_NAMES:
        gt = ds.read_ground_truth(root, "10301", name)
        assert gt.shape == (304, 304)
    assert set(np.unique(ds.read_ground_truth(root, "10301", "AV"))) <= {0, 1, 2, 3}
    flat = need(LAYER_SEQ / "3M")
    assert ds.read_projections(flat, "10301").images.shape == (3, 304, 304)


@pytest.mark.shared_data
@pytest.mark.parametrize("fov,case,min_dice", [("3M", "10301", 0.9), ("6M", "10001", 0.85)])
def test_real_faz3d_projects_onto_2d_faz(fov, case, min_dice):
    root = need(PROJ_3D / f"OCTA_{fov}")
    vol = ds.read_faz3d(root / "GT_FAZ3D" / f"{case}.mat")
    assert vol.shape[0] == 640 and vol.dtype == bool
    proj = vol.any(axis=0)
    gt = ds.read_ground_truth(root, case, "FAZ")
    assert proj.shape == gt.shape
    dice = 2 * (proj & gt).sum() / (proj.sum() + gt.sum())
    raw = proj[:, ::-1] if fov == "3M" else proj[::-1]  # undo the documented mirror
    dice_raw = 2 * (raw & gt).sum() / (raw.sum() + gt.sum())
    assert dice > min_dice and dice > dice_raw + 0.05
