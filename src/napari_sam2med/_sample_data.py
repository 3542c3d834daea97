"""Sample data for napari's File > Open Sample menu.

Everything here is generated in code, so it ships without licensing questions
and without network access. scikit-image's wheel holds no 3D medical volume
that loads offline (``cells3d``, ``brain`` and ``kidney`` all need a pooch
download), so no real 3D sample is offered.

The generators also return ground truth, which tests and examples use to
score a segmentation. The napari hooks of the CT-like volume and the 2D+t movie
add it as a hidden Labels layer named ``<image> ground truth`` (the segment
dock's "Compare with a reference" box preselects it and shows per-object Dice);
the capillary video comes with the prompt points the SAM2Flow dock reads.

Axes and scale are the same for every sample, so opening several of them
never mixes their sliders: the stack axis is called ``"slice"`` and has step 1
(one slider step = one slice or frame, as the docks count them), and the image
plane is ``("y", "x")``. The CT-like volume keeps its physical proportions with
an in-plane scale of ``0.8 / 2.5`` slice thicknesses; its spacing in mm is in the
layer's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Voxel spacing (z, y, x) in mm of the synthetic CT-like volume.
VOLUME_SPACING = (2.5, 0.8, 0.8)
#: Axis labels of every sample layer.
SAMPLE_AXES = ("slice", "y", "x")
#: Scale of the volume sample: stack step 1, the plane in slice thicknesses (keeps the 3D proportions).
VOLUME_SCALE = (1.0, VOLUME_SPACING[1] / VOLUME_SPACING[0], VOLUME_SPACING[2] / VOLUME_SPACING[0])
#: Seed and size of the capillary-flow sample.
CAPILLARY_SEED = 3
CAPILLARY_SHAPE = (24, 128, 128)


@dataclass(frozen=True)
class Blob:
    """An ellipsoidal object: centre ``(z, y, x)``, radii ``(rz, ry, rx)``, intensity."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    value: float


def _ellipsoid(shape: tuple[int, int, int], blob: Blob) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    (cz, cy, cx), (rz, ry, rx) = blob.centre, blob.radii
    return ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = rng.standard_normal(shape).astype(np.float32)
    # Smooth within each slice only, so slices stay independent like real scans.
    return gaussian_filter(noise, sigma=(0, sigma, sigma))


def synthetic_volume(
    shape: tuple[int, int, int] = (24, 128, 128), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like volume: a body, an organ and two lesions, in Hounsfield-like units.

    Parameters
    ----------
    shape : tuple of int
        ``(Z, Y, X)``; each at least 8.
    seed : int
        Seed for the noise.

    Returns
    -------
    image : np.ndarray
        int16 ``(Z, Y, X)``: air -1000, body ~40, organ ~90, lesions ~160 and ~-20.
    labels : np.ndarray
        int32 ground truth: 1 organ, 2 and 3 lesions, 0 elsewhere.
    """
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be (Z, Y, X) with every size >= 8, got {shape}")
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    body = _ellipsoid(shape, Blob((nz / 2, ny / 2, nx / 2), (nz * 2.0, ny * 0.45, nx * 0.42), 40))
    organ = Blob((nz * 0.5, ny * 0.45, nx * 0.36), (nz * 0.38, ny * 0.2, nx * 0.16), 90)
    lesions = (
        Blob((nz * 0.45, ny * 0.58, nx * 0.66), (nz * 0.22, ny * 0.09, nx * 0.09), 160),
        Blob((nz * 0.62, ny * 0.32, nx * 0.62), (nz * 0.15, ny * 0.06, nx * 0.07), -20),
    )
    image = np.where(body, 40.0, -1000.0).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    for obj_id, blob in enumerate((organ, *lesions), start=1):
        inside = _ellipsoid(shape, blob) & body
        image[inside] = blob.value
        labels[inside] = obj_id
    image += 12.0 * _smooth_noise(shape, rng, 1.0) + 6.0 * rng.standard_normal(shape)
    return np.clip(image, -1024, 3071).astype(np.int16), labels


def synthetic_timeseries(
    shape: tuple[int, int, int] = (24, 128, 128), seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like 2D+t movie: three blobs that drift and grow.

    Parameters
    ----------
    shape : tuple of int
        ``(T, Y, X)``; each at least 8.
    seed : int
        Seed for the noise.

    Returns
    -------
    image : np.ndarray
        uint16 ``(T, Y, X)``: background ~100 counts, blobs ~600-1200, shot noise.
    labels : np.ndarray
        int32 ground truth, one id per blob (1..3).
    """
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be (T, Y, X) with every size >= 8, got {shape}")
    nt, ny, nx = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:ny, :nx].astype(np.float32)
    # (start y, start x, velocity y, velocity x, start radius, growth, brightness), in fractions.
    tracks = (
        (0.30, 0.25, 0.012, 0.015, 0.07, 0.0020, 1200.0),
        (0.70, 0.30, -0.010, 0.012, 0.09, 0.0010, 800.0),
        (0.45, 0.75, 0.008, -0.010, 0.05, 0.0030, 600.0),
    )
    expected = np.full(shape, 100.0, np.float32)
    labels = np.zeros(shape, np.int32)
    for t in range(nt):
        for obj_id, (y0, x0, vy, vx, r0, growth, peak) in enumerate(tracks, start=1):
            cy, cx = (y0 + vy * t) * ny, (x0 + vx * t) * nx
            radius = (r0 + growth * t) * min(ny, nx)
            dist2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2
            inside = dist2 <= 1.0
            # Flat-topped profile with a soft rim, like a stained cell.
            expected[t] += peak * np.clip(1.25 - 0.5 * dist2, 0.0, 1.0) * (dist2 <= 1.3)
            labels[t][inside & (labels[t] == 0)] = obj_id
    image = rng.poisson(expected).astype(np.uint16)
    return image, labels


def synthetic_capillary_video(shape: tuple[int, int, int] = CAPILLARY_SHAPE, seed: int = CAPILLARY_SEED):
    """A capillary-flow video from :mod:`napari_sam2med.flow.synthetic` (cells moving along vessels).

    Returns
    -------
    SyntheticVideo
        ``frames`` float32 ``(T, H, W)`` in [0, 1], ground-truth ``flow``, ``vessel_ids`` and ``speeds``.
    """
    from .flow.synthetic import SyntheticConfig, make_video

    n_frames, height, width = shape
    return make_video(SyntheticConfig(height=height, width=width, n_frames=n_frames, seed=seed, n_vessels=(3, 3),
                                      n_defocus=(1, 1)))


# -- napari hooks ---------------------------------------------------------------
#: Suffix of the ground-truth Labels layer of a sample image.
TRUTH_SUFFIX = " ground truth"


def _truth_layer(labels: np.ndarray, image_meta: dict, names: dict[int, str]) -> tuple:
    """The hidden ground-truth Labels layer of a sample image (same scale and axes)."""
    meta = {"name": image_meta["name"] + TRUTH_SUFFIX, "visible": False, "opacity": 0.5,
            "axis_labels": image_meta["axis_labels"],
            "metadata": {"ground_truth": True, "objects": dict(names)}}
    if "scale" in image_meta:
        meta["scale"] = image_meta["scale"]
    return (labels, meta, "labels")


def make_synthetic_volume() -> list[tuple]:
    """napari sample: synthetic CT-like volume (24 x 128 x 128, anisotropic spacing) and its ground truth."""
    image, truth = synthetic_volume()
    meta = {
        "name": "synthetic CT volume",
        "scale": VOLUME_SCALE,
        "axis_labels": SAMPLE_AXES,
        "contrast_limits": (-160.0, 240.0),
        "colormap": "gray",
        "metadata": {"spacing_mm": VOLUME_SPACING},
    }
    return [(image, meta, "image"), _truth_layer(truth, meta, {1: "organ", 2: "bright lesion", 3: "dark lesion"})]


def make_synthetic_timeseries() -> list[tuple]:
    """napari sample: synthetic 2D+t movie (24 frames of 128 x 128) with moving, growing blobs, and its ground truth."""
    image, truth = synthetic_timeseries()
    meta = {"name": "synthetic time series", "colormap": "gray", "axis_labels": SAMPLE_AXES}
    return [(image, meta, "image"), _truth_layer(truth, meta, {1: "blob 1", 2: "blob 2", 3: "blob 3"})]


def make_capillary_video() -> list[tuple]:
    """napari sample: synthetic capillary-flow video (24 frames of 128 x 128) and SAM2Flow prompt points.

    The points layer is the one the SAM2Flow dock reads (``roi_id`` / ``label`` features),
    with two points on each in-focus vessel and one in the background per vessel.
    """
    from .flow.synthetic import prompts_for

    video = synthetic_capillary_video()
    rois = prompts_for(video, n_pos=2, n_neg=1, seed=0)
    points = np.concatenate([np.asarray(r.points, float) for r in rois])
    roi_ids = np.concatenate([np.full(len(r.points), r.id, int) for r in rois])
    labels = np.concatenate([np.asarray(r.labels, int) for r in rois])
    image_meta = {"name": "synthetic capillary video", "colormap": "gray", "axis_labels": SAMPLE_AXES,
                  "contrast_limits": (0.0, 1.0)}
    points_meta = {"name": "SAM2Flow prompts", "features": {"roi_id": roi_ids, "label": labels},
                   "face_color": np.where(labels[:, None] == 1, [[0.13, 0.87, 0.27, 1.0]], [[1.0, 0.2, 0.27, 1.0]]),
                   "symbol": ["disc" if lab == 1 else "cross" for lab in labels], "size": 4.0}
    return [(video.frames, image_meta, "image"), (points, points_meta, "points")]
