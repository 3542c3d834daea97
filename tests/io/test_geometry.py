"""Scanner geometry survives read -> (reslice) -> write: NIfTI, NRRD, DICOM(-SEG), MedSAM2 npz."""

from __future__ import annotations

import numpy as np
import pytest
from _geometry_data import oblique_affine, write_dicom_series, write_oblique_nifti

from napari_sam2med.io import Geometry, open_stack, read_array, read_geometry, write_labels
from napari_sam2med.io.geometry import check_affine, from_itk, napari_world

nib = pytest.importorskip("nibabel")

#: A point inside the oblique test volume (RAS mm).
WORLD_POINT = np.array([-25.0, 20.0, 60.0])


def _paint(geometry: Geometry, shape, value=7):
    voxel = tuple(int(v) for v in np.round(geometry.ras_to_voxel(WORLD_POINT)))
    labels = np.zeros(shape, np.uint8)
    labels[voxel] = value
    return labels, voxel


def test_nifti_geometry_is_read_in_zyx_order(oblique_nifti):
    stack = open_stack(oblique_nifti)
    affine = nib.load(str(oblique_nifti)).affine
    g = stack.geometry
    assert stack.shape == (10, 16, 20) and g.shape == stack.shape
    assert g.qform_code == 1 and g.sform_code == 2
    np.testing.assert_allclose(g.spacing, (2.5, 0.6, 0.8), rtol=1e-6)
    # voxel (z, y, x) of ours is nibabel's (i, j, k) = (x, y, z)
    for zyx in [(0, 0, 0), (3, 5, 7), (9, 15, 19)]:
        np.testing.assert_allclose(g.voxel_to_ras(zyx), (affine @ [*zyx[::-1], 1])[:3], atol=1e-5)
    assert np.array_equal(stack.raw(3), np.asarray(nib.load(str(oblique_nifti)).dataobj)[:, :, 3].T)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("axis", ["axial", "sagittal"])
def test_nifti_labels_keep_affine_and_header_codes(tmp_path, oblique_nifti, suffix, axis):
    source = nib.load(str(oblique_nifti))
    stack = open_stack(oblique_nifti)
    labels, voxel = _paint(stack.geometry, stack.shape)
    out = write_labels(tmp_path / f"labels{suffix}", labels, geometry=stack.geometry, axis=axis)
    back = nib.load(str(out))
    assert np.array_equal(back.affine, source.affine)  # bit for bit
    for key in ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x",
                "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z", "pixdim", "xyzt_units"):
        assert np.array_equal(back.header[key], source.header[key]), key
    assert back.header.get_intent()[0] == "label"
    assert back.header["descrip"].tobytes().rstrip(b"\0") == f"sam2med labels axis={axis}".encode()
    assert back.get_data_dtype() == np.uint8 and back.shape == (20, 16, 10)
    # The painted voxel sits at the painted world point for nibabel (independent of our code).
    ijk = np.round(np.linalg.inv(back.affine) @ [*WORLD_POINT, 1])[:3].astype(int)
    data = np.asarray(back.dataobj)
    assert data[tuple(ijk)] == 7 and data.sum() == 7
    assert tuple(ijk) == voxel[::-1]


def test_labels_shape_must_match_the_image(tmp_path, oblique_nifti):
    stack = open_stack(oblique_nifti)
    with pytest.raises(ValueError, match=r"labels shape \(10, 16, 19\) does not match the image \(10, 16, 20\)"):
        write_labels(tmp_path / "bad.nii.gz", np.zeros((10, 16, 19), np.uint8), geometry=stack.geometry)
    assert not list(tmp_path.glob("*bad*"))


def test_sheared_affine_is_refused_in_one_line(tmp_path):
    affine = oblique_affine()
    affine[:3, 1] += 0.2 * affine[:3, 0]  # shear: axes no longer at 90 degrees
    with pytest.raises(ValueError, match="not orthogonal") as info:
        check_affine(affine)
    assert "\n" not in str(info.value)
    path = tmp_path / "sheared.nii.gz"
    import nibabel

    image = nibabel.Nifti1Image(np.zeros((4, 4, 4), np.int16), affine)
    image.set_sform(affine, code=1)
    image.set_qform(None, code=0)  # sform only, so the shear survives (qform cannot store one)
    nibabel.save(image, str(path))
    with pytest.raises(ValueError, match="not orthogonal"):
        open_stack(path)


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_axis_view_labels_come_back_in_voxel_order(oblique_nifti, axis):
    stack = open_stack(oblique_nifti)
    volume = np.asarray(stack.data)
    view = stack.along(axis)
    assert view.geometry is stack.geometry
    # An asymmetric "segmentation" computed frame by frame on the view...
    per_frame = np.stack([view.raw(i) > 500 + 10 * i for i in range(len(view))])
    back = view.axis_view.to_original(per_frame)
    # ...is the same rule applied along the right original axis.
    k = view.axis_view.voxel_axis
    index = np.arange(volume.shape[k]).reshape([-1 if a == k else 1 for a in range(3)])
    np.testing.assert_array_equal(back, volume > 500 + 10 * index)
    np.testing.assert_allclose(view.normalized(0)[..., 0].mean(), view.normalized(0)[..., 1].mean())
    assert view.window == stack.window


def test_axis_follows_the_anatomy_not_the_storage(tmp_path):
    # A sagittally stored volume: NIfTI i runs A->P, j runs S->I, k runs L->R (x of the world).
    affine = np.array([[0, 0, -1.0, 5], [-0.5, 0, 0, 3], [0, -0.7, 0, 8], [0, 0, 0, 1]])
    path = write_oblique_nifti(tmp_path / "sag.nii.gz", affine=affine,
                               data=np.zeros((8, 9, 7), np.int16))
    stack = open_stack(path)  # (Z, Y, X) = (k, j, i) = (L-R, S-I, A-P)
    assert stack.along("sagittal").axis_view.voxel_axis == 0
    assert stack.along("axial").axis_view.voxel_axis == 1
    assert stack.along("coronal").axis_view.voxel_axis == 2
    assert open_stack(path).along("axial").shape == (9, 7, 8)


def test_nrrd_round_trip_in_lps(tmp_path, oblique_nifti):
    nrrd = pytest.importorskip("nrrd")
    stack = open_stack(oblique_nifti)
    labels, voxel = _paint(stack.geometry, stack.shape, value=5)
    out = write_labels(tmp_path / "labels.nrrd", labels, geometry=stack.geometry, axis="coronal")
    data, header = nrrd.read(str(out))  # pynrrd default: fastest axis first = NIfTI order
    affine = nib.load(str(oblique_nifti)).affine
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(np.asarray(header["space directions"]), (lps @ affine[:3, :3]).T, atol=1e-6)
    np.testing.assert_allclose(header["space origin"], lps @ affine[:3, 3], atol=1e-6)
    assert header["space"] == "left-posterior-superior" and header["sam2med_axis"] == "coronal"
    assert data[voxel[::-1]] == 5
    back = read_geometry(out)
    assert back.same_space(stack.geometry)
    np.testing.assert_array_equal(read_array(out), labels)


def test_medsam2_npz_geometry(tmp_path):
    imgs = np.zeros((4, 6, 5), np.uint8)
    gts = np.zeros_like(imgs)
    direction = np.array([0, 1, 0, 1, 0, 0, 0, 0, -1.0])  # as in the MedSAM2 CT lesion files
    path = tmp_path / "case.npz"
    np.savez(path, imgs=imgs, gts=gts, spacing=[0.3, 0.4, 5.0], direction=direction, origin=[1.0, 2.0, 3.0])
    g = open_stack(path).geometry
    np.testing.assert_allclose(g.spacing, (5.0, 0.4, 0.3))  # npz spacing is ITK (x, y, z)
    # ITK: LPS = D @ diag(spacing) @ (x, y, z) + origin
    x, y, z = 2, 3, 1
    lps = direction.reshape(3, 3) @ (np.array([0.3, 0.4, 5.0]) * [x, y, z]) + [1.0, 2.0, 3.0]
    np.testing.assert_allclose(g.voxel_to_ras((z, y, x)), lps * [-1, -1, 1])
    with pytest.raises(ValueError, match="spacing must be positive"):
        from_itk([0, 1, 1], direction, [0, 0, 0], (4, 6, 5))


@pytest.mark.shared_data
def test_ct_lesion_npz_spacing_is_xyz(shared_data):
    path = sorted((shared_data / "ct_lesions").glob("*.npz"))[0]
    stack = open_stack(path)
    z, y, x = stack.geometry.spacing
    assert z == pytest.approx(5.0) and y == pytest.approx(x) and y < 1.0 and len(stack) < 20


def test_dicom_geometry_matches_positions(oblique_dicom):
    stack = open_stack(oblique_dicom.folder)
    g = stack.geometry
    assert g.source == "dicom" and g.shape == oblique_dicom.shape and len(g.source_files) == 6
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ g.affine
    for k, position in enumerate(oblique_dicom.positions):
        np.testing.assert_allclose(lps[:3, 3] + lps[:3, 0] * k, position, atol=1e-6)
    # column index x moves along the row direction cosines by PixelSpacing[1]
    np.testing.assert_allclose(lps[:3, 2], oblique_dicom.rotation[:, 0] * 0.5, atol=1e-6)
    np.testing.assert_allclose(lps[:3, 1], oblique_dicom.rotation[:, 1] * 0.7, atol=1e-6)
    assert np.asarray(stack.raw(4)).mean() == 1040 - 1024  # slices ordered by position
    np.testing.assert_allclose(napari_world(g.voxel_to_ras((0, 0, 0))),
                               oblique_dicom.positions[0][::-1], atol=1e-6)  # (S, P, L)


@pytest.mark.parametrize("problem, message", [
    ("missing", "1 of 6 DICOM slices lack ImagePositionPatient"),
    ("gap", "unevenly spaced"),
])
def test_bad_dicom_geometry_one_line(tmp_path, problem, message):
    pytest.importorskip("pydicom")
    kwargs = {"drop_position_of": 2} if problem == "missing" else {"gap_after": 2}
    write_dicom_series(tmp_path, **kwargs)
    with pytest.raises(ValueError, match=message) as info:
        open_stack(tmp_path)
    assert "\n" not in str(info.value)


def test_dicom_seg_references_the_source_instances(tmp_path, oblique_dicom):
    hd = pytest.importorskip("highdicom")
    import pydicom

    stack = open_stack(oblique_dicom.folder)
    g = stack.geometry
    labels = np.zeros(stack.shape, np.uint8)
    labels[1, 2:5, 3:6] = 4
    labels[3, 6:9, 1:4] = 9
    labels[4, 0, 0] = 9
    out = write_labels(tmp_path / "labels.seg.dcm", labels, geometry=g, axis="coronal")
    seg = hd.seg.segread(str(out))
    assert seg.number_of_segments == 2 and "coronal" in seg.SeriesDescription
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["object 4", "object 9"]
    assert seg.FrameOfReferenceUID == pydicom.dcmread(g.source_files[0]).FrameOfReferenceUID
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in g.source_files]
    uid_to_slice = {ds.SOPInstanceUID: k for k, ds in enumerate(sources)}
    seen = set()
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = uid_to_slice[uid]
        seen.add(k)
        np.testing.assert_allclose(frame.PlanePositionSequence[0].ImagePositionPatient,
                                   sources[k].ImagePositionPatient, atol=1e-4)
    assert seen == {1, 3, 4}  # empty slices omitted, each frame on its own source slice
    for k in range(len(sources)):
        got = seg.get_pixels_by_source_instance(
            [sources[k].SOPInstanceUID], segment_numbers=[1, 2], combine_segments=True,
            relabel=False, assert_missing_frames_are_empty=True)[0]
        expected = np.select([labels[k] == 4, labels[k] == 9], [1, 2], 0)
        np.testing.assert_array_equal(got, expected)


def test_dicom_seg_needs_dicom_input(tmp_path, oblique_nifti):
    stack = open_stack(oblique_nifti)
    with pytest.raises(ValueError, match="DICOM-SEG .* needs a DICOM series"):
        write_labels(tmp_path / "x.dcm", np.ones(stack.shape, np.uint8), geometry=stack.geometry)


def test_view_points_and_napari_dims_order(oblique_nifti):
    from napari_sam2med.io.axes import napari_dims_order

    stack = open_stack(oblique_nifti)
    volume = np.asarray(stack.data)
    view = stack.along("coronal")
    i, r, c = 7, 4, 13
    z, y, x = view.axis_view.point_to_original((i, r, c)).astype(int)
    assert view.raw(i)[r, c] == volume[z, y, x]
    np.testing.assert_array_equal(view.axis_view.point_to_view((z, y, x)), (i, r, c))
    assert [napari_dims_order(a) for a in ("axial", "coronal", "sagittal")] == [(0, 1, 2), (1, 0, 2), (2, 0, 1)]
    with pytest.raises(ValueError, match="already a resliced view"):
        view.along("axial")


def test_reader_claims_only_medsam2_npz(tmp_path):
    from napari_sam2med._reader import get_reader

    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    np.savez(tmp_path / "case.npz", imgs=np.zeros((3, 4, 5), np.uint8), gts=np.ones((3, 4, 5), np.uint8),
             spacing=[0.5, 0.5, 2.0], direction=np.eye(3).ravel(), origin=[0, 0, 0])
    assert get_reader(str(tmp_path / "other.npz")) is None
    layers = get_reader(str(tmp_path / "case.npz"))(str(tmp_path / "case.npz"))
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    assert layers[0][1]["scale"] == pytest.approx((2.0, 0.5, 0.5))
    np.testing.assert_allclose(layers[1][1]["affine"], layers[0][1]["affine"])


def test_labels_file_must_match_the_image_grid(tmp_path, oblique_nifti):
    from napari_sam2med.io import read_labels_for

    stack = open_stack(oblique_nifti)
    good = write_labels(tmp_path / "good.nii.gz", np.ones(stack.shape, np.uint8), geometry=stack.geometry)
    assert read_labels_for(good, stack.geometry).shape == stack.shape
    moved = oblique_affine()
    moved[:3, 3] += [0.0, 2.0, 0.0]
    other = write_oblique_nifti(tmp_path / "moved_labels.nii.gz", affine=moved)
    with pytest.raises(ValueError, match="not on the image's voxel grid .* 2 mm"):
        read_labels_for(other, stack.geometry)
    small = write_labels(tmp_path / "small.tif", np.ones((10, 16, 19), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(10, 16, 19\), the image \(10, 16, 20\)"):
        read_labels_for(small, stack.geometry)


def test_tiff_spacing_reaches_nifti_labels(tmp_path):
    volume = np.zeros((4, 6, 5), np.uint16)
    path = write_labels(tmp_path / "vol.tif", volume, scale=(3.0, 0.5, 0.25))
    stack = open_stack(path)
    assert stack.geometry is not None and stack.geometry.spacing == pytest.approx((3.0, 0.5, 0.25))
    out = write_labels(tmp_path / "labels.nii.gz", np.ones(stack.shape, np.uint8), geometry=stack.geometry)
    assert nib.load(str(out)).header.get_zooms() == pytest.approx((0.25, 0.5, 3.0))
    assert open_stack(write_labels(tmp_path / "plain.tif", volume)).geometry is None


def test_resliced_view_reads_each_stored_slice_once():
    from napari_sam2med.io import FrameStack, LazySlices

    volume = np.random.default_rng(0).integers(0, 255, (6, 7, 8)).astype(np.uint8)
    reads = []
    lazy = LazySlices(lambda i: reads.append(i) or volume[i], 6, (7, 8), np.uint8)
    view = FrameStack(lazy).along("sagittal")
    assert reads == []  # nothing read up front
    frames = [view.raw(i) for i in range(len(view))]
    np.testing.assert_array_equal(np.stack(frames), volume.transpose(2, 0, 1))
    assert sorted(reads) == list(range(6))


@pytest.mark.parametrize("qform_code, sform_code", [(1, 0), (0, 4), (2, 1)])
def test_header_codes_survive_whatever_they_are(tmp_path, qform_code, sform_code):
    path = write_oblique_nifti(tmp_path / "src.nii", qform_code=qform_code, sform_code=sform_code)
    source = nib.load(str(path))
    stack = open_stack(path)
    out = write_labels(tmp_path / "labels.nii.gz", np.zeros(stack.shape, np.uint8), geometry=stack.geometry)
    back = nib.load(str(out))
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (qform_code, sform_code)
    np.testing.assert_array_equal(back.header.get_qform(), source.header.get_qform())
    np.testing.assert_array_equal(back.header.get_sform(), source.header.get_sform())
    assert np.array_equal(back.affine, source.affine)
