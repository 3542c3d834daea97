"""``sam2med propagate`` keeps the scanner geometry: NIfTI in -> NIfTI out, DICOM in -> DICOM-SEG out."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_sam2med.cli import main
from napari_sam2med.io import FrameStack, open_stack

nib = pytest.importorskip("nibabel")

PROMPTS = {"prompts": [{"object": 3, "slice": 5, "points": [[5, 8], [6, 9]], "labels": [1, 1]},
                       {"object": 6, "slice": 4, "box": [1, 1, 8, 7]}]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Seeded random weights of the tiny test model, so two runs give the same masks."""
    import torch

    from napari_sam2med.sam2 import load_model

    torch.manual_seed(0)
    model = load_model("sam2.1-test", image_size=64, random_init=True, device="cpu", progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def _cli(*args):
    cmd = [sys.executable, "-m", "napari_sam2med.cli", "propagate", *map(str, args),
           "--model", "sam2.1-test", "--image-size", "64", "--device", "cpu", "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def _prompts(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(PROMPTS))
    return path


def test_sagittal_propagation_writes_labels_in_the_source_space(tmp_path, oblique_nifti, checkpoint):
    out = tmp_path / "ct_labels.nii.gz"
    result = _cli(oblique_nifti, "--prompts", _prompts(tmp_path), "--out", out, "--axis", "sagittal",
                  "--checkpoint", checkpoint)
    assert result.returncode == 0, result.stderr
    source, labels = nib.load(str(oblique_nifti)), nib.load(str(out))
    assert np.array_equal(labels.affine, source.affine)
    for key in ("qform_code", "sform_code", "srow_x", "srow_y", "srow_z", "quatern_b", "qoffset_z", "pixdim"):
        assert np.array_equal(labels.header[key], source.header[key]), key
    assert labels.shape == source.shape
    assert b"axis=sagittal" in labels.header["descrip"].tobytes()
    got = np.asarray(labels.dataobj).transpose(2, 1, 0)  # (Z, Y, X)

    # The same propagation run in-process on the volume transposed so that its axial
    # slices are the sagittal ones: the CLI's labels are those, transposed back.
    import torch

    from napari_sam2med.engine import Session, run_to_end
    from napari_sam2med.engine.prompts import PromptSet
    from napari_sam2med.sam2 import load_model

    torch.set_num_threads(1)
    stack = open_stack(oblique_nifti)
    order = stack.along("sagittal").axis_view.order
    assert order == (2, 0, 1)
    resliced = FrameStack(np.asarray(stack.data).transpose(order), window=stack.window)
    model = load_model("sam2.1-test", image_size=64, checkpoint=checkpoint, device="cpu", progress=False)
    session = Session(model, resliced)
    session.prompts = PromptSet.from_json(PROMPTS, len(resliced), resliced.frame_shape)
    expected = run_to_end(session.propagate(direction="both"))
    assert expected.any() and (expected == 3).any()  # the seeded weights do segment something
    np.testing.assert_array_equal(got, expected.transpose(np.argsort(order)))


def test_dicom_series_to_dicom_seg(tmp_path, oblique_dicom, checkpoint):
    hd = pytest.importorskip("highdicom")
    import pydicom

    out = tmp_path / "labels.dcm"
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"prompts": [{"object": 2, "slice": 2, "box": [2, 2, 9, 8]}]}))
    result = _cli(oblique_dicom.folder, "--prompts", prompts, "--out", out, "--checkpoint", checkpoint)
    assert result.returncode == 0, result.stderr
    seg = hd.seg.segread(str(out))
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
               for p in sorted(oblique_dicom.folder.iterdir())}
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == set(sources)
    assert seg.SegmentSequence[0].SegmentLabel == "object 2"
    assert "axial" in seg.SeriesDescription


@pytest.mark.parametrize("case", ["seg_from_nifti", "mixed_series", "bad_axis_rgb"])
def test_bad_geometry_one_line_exit_2(tmp_path, oblique_nifti, capsys, case):
    from _geometry_data import write_dicom_series

    stack, out, extra = oblique_nifti, tmp_path / "labels.nii.gz", []
    if case == "seg_from_nifti":
        out = tmp_path / "labels.dcm"
    elif case == "mixed_series":
        stack = tmp_path / "mixed"
        stack.mkdir()
        for name in ("a", "b"):  # two series in one folder
            (tmp_path / name).mkdir()
            write_dicom_series(tmp_path / name, n_slices=2)
            for p in (tmp_path / name).iterdir():
                p.rename(stack / f"{name}_{p.name}")
    else:
        stack = tmp_path / "rgb.npy"
        np.save(stack, np.zeros((4, 16, 16, 3), np.uint8))
        extra = ["--axis", "coronal"]
    rc = main(["propagate", str(stack), "--prompts", str(_prompts(tmp_path)), "--out", str(out),
               "--model", "sam2.1-test", "--random-init", "--image-size", "64", "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("sam2med propagate: error:") and "\n" not in err
    assert {"seg_from_nifti": "DICOM-SEG", "mixed_series": "mixes 2 DICOM series",
            "bad_axis_rgb": "grayscale"}[case] in err
    assert not out.exists()


def test_coronal_axis_to_zarr_gives_original_voxel_order(tmp_path):
    zarr = pytest.importorskip("zarr")
    volume = np.random.default_rng(0).integers(0, 255, (8, 20, 16)).astype(np.uint8)
    np.save(tmp_path / "vol.npy", volume)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({"prompts": [{"object": 1, "slice": 10, "box": [1, 2, 6, 12]}]}))
    out = tmp_path / "labels.zarr"
    rc = main(["propagate", str(tmp_path / "vol.npy"), "--prompts", str(prompts), "--out", str(out),
               "--axis", "coronal", "--model", "sam2.1-test", "--random-init", "--image-size", "64",
               "--no-progress", "--direction", "forward"])
    assert rc == 0
    labels = zarr.open_array(str(out), mode="r")[:]
    assert labels.shape == volume.shape
    assert not labels[:, :10].any()  # forward from coronal slice 10: nothing before it along y
