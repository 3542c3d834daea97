"""Training data: formats, lazy reading, split by volume, clip sampling, crops."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2med.train.crop import CropConfig, crop_window, cut, paste
from napari_sam2med.train.data import discover, split_by_volume
from napari_sam2med.train.sampler import AugmentConfig, Mode, SampleConfig, sample_clip

from .conftest import blob_volume


def test_npz_folder_and_split(npz_dir):
    vols = discover([npz_dir])
    assert [v.name for v in vols] == ["vol0", "vol1", "vol2"]
    assert vols[0].spacing == (2.0, 1.0, 1.0)
    assert sorted(vols[0].presence) == [1, 2]
    train, val = split_by_volume(vols, 1, seed=0)
    assert len(train) == 2 and len(val) == 1
    assert not {v.name for v in train} & {v.name for v in val}
    train, val = split_by_volume(vols, ["vol1"])
    assert [v.name for v in val] == ["vol1"]


def test_pairs_and_sam2_layout(tmp_path):
    import imageio.v3 as iio

    img, lab = blob_volume(3)
    tifffile.imwrite(tmp_path / "a.tif", img)
    np.save(tmp_path / "a_lab.npy", lab)
    root = tmp_path / "sam2"
    for z in range(img.shape[0]):
        (root / "images" / "v1").mkdir(parents=True, exist_ok=True)
        (root / "masks" / "v1").mkdir(parents=True, exist_ok=True)
        iio.imwrite(root / "images" / "v1" / f"{z:05d}.png", img[z])
        iio.imwrite(root / "masks" / "v1" / f"{z:05d}.png", lab[z].astype(np.uint8))
    (root / "val.txt").write_text("v1\n")
    vols = discover([f"{tmp_path / 'a.tif'}={tmp_path / 'a_lab.npy'}", root])
    assert [v.name for v in vols] == ["a", "v1"]
    assert vols[1].split == "val"
    np.testing.assert_array_equal(vols[1].label(2), lab[2])
    np.testing.assert_allclose(vols[0].frame(1)[..., 0], img[1] / 255.0, atol=1e-6)
    train, val = split_by_volume(vols, 0)
    assert [v.name for v in val] == ["v1"]


@pytest.mark.parametrize("bad, msg", [("mismatch", "differ"), ("empty", "empty"), ("missing", "no such")])
def test_bad_inputs(tmp_path, bad, msg):
    img, lab = blob_volume(0)
    np.save(tmp_path / "i.npy", img)
    if bad == "mismatch":
        np.save(tmp_path / "l.npy", lab[:, :10])
    elif bad == "empty":
        np.save(tmp_path / "l.npy", np.zeros_like(lab))
    with pytest.raises((ValueError, FileNotFoundError), match=msg):
        vols = discover([f"{tmp_path / 'i.npy'}={tmp_path / 'l.npy'}"])
        vols[0].presence  # noqa: B018


@pytest.mark.parametrize("crop", [None, CropConfig()])
def test_clip_sampling(npz_dir, crop):
    vol = discover([npz_dir])[0]
    cfg = SampleConfig(mode=Mode.VIDEO, frames=4, max_objects=2, image_size=64, crop=crop)
    clip = sample_clip(vol, cfg, np.random.default_rng(0))
    n = len(clip.frames)
    assert clip.images.shape == (n, 3, 64, 64) and 1 <= n <= 4
    assert clip.masks.shape[1:] == (n, 64, 64)
    assert bool((clip.masks[:, 0].flatten(1).amax(1) > 0).all()), "every object is present on frame 0"
    assert abs(np.diff(clip.frames)).max(initial=1) == 1, "consecutive slices"
    if crop is not None:
        assert clip.masks.shape[0] == 1
    # same seed, same clip; another seed, another clip
    again = sample_clip(vol, cfg, np.random.default_rng(0))
    assert clip.frames == again.frames and bool((clip.images == again.images).all())


def test_augmentation_is_consistent(npz_dir):
    """Geometry moves image and mask together: the bright blob stays under its mask."""
    vol = discover([npz_dir])[0]
    cfg = SampleConfig(mode=Mode.IMAGE, image_size=64, augment=AugmentConfig(noise=0.0))
    for seed in range(6):
        clip = sample_clip(vol, cfg, np.random.default_rng(seed))
        m = clip.masks[0, 0] > 0
        img = clip.images[0, 0]
        assert img[m].mean() > img[~m].mean()


def test_crop_window_roundtrip():
    mask = np.zeros((100, 120), bool)
    mask[10:20, 100:118] = True
    win = crop_window(mask, CropConfig(context=3.0, min_side=16))
    assert win[2] == 54  # 3 x the longer box side (18)
    sub = cut(mask, win)
    assert sub.shape == (54, 54) and sub.sum() == mask.sum()  # padded where it leaves the slice
    np.testing.assert_array_equal(paste(sub, win, mask.shape), mask)


@pytest.mark.shared_data
def test_shared_ct_and_octa_faz(shared_data):
    vols = discover([shared_data / "ct_lesions", f"octa-faz:{shared_data / 'octa500_projections_3d' / 'OCTA_3M'}"])
    names = [v.name for v in vols]
    assert len([n for n in names if n.startswith("CT_Lesion")]) == 4
    faz = [v for v in vols if v.name.startswith("octa-faz-")]
    assert len(faz) == 3 and all(v.num_slices == 3 and sorted(v.presence) == [1] for v in faz)
    train, val = split_by_volume(vols, ["CT_Lesion_000009_03_01_036-048"])
    assert len(train) == 6 and [v.name for v in val] == ["CT_Lesion_000009_03_01_036-048"]


def test_object_end_clips_show_the_object_vanish(tmp_path):
    img, lab = blob_volume(1, n=10)
    lab[:3] = 0
    lab[7:] = 0  # both objects span slices 3-6 only
    np.save(tmp_path / "i.npy", img)
    np.save(tmp_path / "l.npy", lab)
    vol = discover([f"{tmp_path / 'i.npy'}={tmp_path / 'l.npy'}"])[0]

    def vanish_rate(p):
        cfg = SampleConfig(mode=Mode.VIDEO, frames=4, max_objects=1, image_size=64, p_object_end=p)
        clips = [sample_clip(vol, cfg, np.random.default_rng(s)) for s in range(12)]
        return np.mean([bool((c.masks[0].flatten(1).amax(1) == 0).any()) for c in clips])

    assert vanish_rate(1.0) == 1.0
    assert vanish_rate(0.0) < 0.8
