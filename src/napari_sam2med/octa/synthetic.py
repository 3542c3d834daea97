"""Synthetic OCTA-like layer sequences for tests and demos.

A case is a few en-face layers of the same retina: a dark foveal avascular
zone (FAZ) disk in the centre, ``n_vessels`` bright vessel trees growing from
the border towards the FAZ (one tree per angular sector so trees never touch)
and a speckled capillary background. Consecutive layers differ slightly
(vessel width, FAZ radius, one-pixel shifts, noise), like neighbouring OCTA
layers. :func:`write_layer_sequence_folder` writes a case as composite PNGs in
the OCTA-500 / SAM-OCTA2 layouts that :mod:`napari_sam2med.octa.datasets` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line

#: Green used by the composite overlays (RGB).
OVERLAY_GREEN = (0, 200, 0)


@dataclass
class SyntheticOcta:
    """One synthetic case.

    Attributes
    ----------
    images : np.ndarray
        uint8 (L, H, W) layer images.
    vessels : np.ndarray
        int32 (L, H, W); 0 background, ``k`` = pixels of vessel tree ``k`` (1..n).
    faz : np.ndarray
        bool (L, H, W) FAZ masks.
    n_vessels : int
        Number of trees drawn (ids 1..n_vessels).
    """

    images: np.ndarray
    vessels: np.ndarray
    faz: np.ndarray
    n_vessels: int


def _draw_segment(skeleton: np.ndarray, p0, p1) -> None:
    h, w = skeleton.shape
    rr, cc = line(int(round(p0[0])), int(round(p0[1])), int(round(p1[0])), int(round(p1[1])))
    keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    skeleton[rr[keep], cc[keep]] = True


def _tree_skeletons(size: int, n_vessels: int, faz_radius: float, rng) -> list[tuple]:
    """Segments ``(p0, p1, width)`` for each tree, drawn once per case."""
    centre = np.array([size / 2.0, size / 2.0])
    sector = 2 * np.pi / n_vessels
    start_angle = rng.uniform(0, sector)
    trees = []
    for k in range(n_vessels):
        theta = start_angle + k * sector
        direction = np.array([np.sin(theta), np.cos(theta)])
        inner = centre + direction * (faz_radius + 0.12 * size)
        outer = centre + direction * (0.75 * size)  # beyond the border: clipped
        segs = [(outer, inner, 2.5)]
        # two side branches leaving the trunk at +-spread within the sector
        spread = min(0.3 * sector, np.deg2rad(30))
        inner_r = faz_radius + 0.12 * size
        for sign, frac in ((1, 0.2), (-1, 0.55)):
            base = centre + direction * (inner_r + frac * (0.45 * size - inner_r))
            ang = theta + sign * spread
            tip = base + np.array([np.sin(ang), np.cos(ang)]) * 0.22 * size
            segs.append((base, tip, 1.5))
        trees.append(segs)
    return trees


def _render_tree(size: int, segments, width_scale: float, shift) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    for p0, p1, width in segments:
        skel = np.zeros((size, size), bool)
        _draw_segment(skel, np.add(p0, shift), np.add(p1, shift))
        radius = max(0.5, width * width_scale)
        mask |= ndi.distance_transform_edt(~skel) <= radius
    return mask


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask, structure=np.ones((3, 3)))
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (1 + int(np.argmax(sizes)))


def make_synthetic_octa(
    n_layers: int = 4,
    size: int = 128,
    n_vessels: int = 4,
    faz_radius: float | None = None,
    seed: int = 0,
) -> SyntheticOcta:
    """Generate an OCTA-like layer sequence with vessel trees and a central FAZ.

    Parameters
    ----------
    n_layers : int
        Number of layers L.
    size : int
        Height and width of each layer (square).
    n_vessels : int
        Number of vessel trees (2..8); each gets its own angular sector.
    faz_radius : float, optional
        FAZ radius in pixels of the first layer; default ``size / 10``.
    seed : int
        Random seed; the same seed gives the same case.

    Returns
    -------
    SyntheticOcta
    """
    if not 2 <= n_vessels <= 8:
        raise ValueError(f"n_vessels must be in 2..8, got {n_vessels}")
    if n_layers < 1 or size < 32:
        raise ValueError(f"need n_layers >= 1 and size >= 32, got {n_layers}, {size}")
    rng = np.random.default_rng(seed)
    faz_radius = size / 10.0 if faz_radius is None else float(faz_radius)
    trees = _tree_skeletons(size, n_vessels, faz_radius, rng)
    rows, cols = np.mgrid[:size, :size]
    images = np.zeros((n_layers, size, size), np.uint8)
    vessels = np.zeros((n_layers, size, size), np.int32)
    faz = np.zeros((n_layers, size, size), bool)
    for layer in range(n_layers):
        shift = rng.integers(-1, 2, size=2)
        width_scale = 1.0 + 0.15 * np.sin(layer)
        radius = faz_radius + rng.uniform(-1.0, 1.0)
        faz[layer] = (rows - size / 2 - shift[0]) ** 2 + (cols - size / 2 - shift[1]) ** 2 <= radius**2
        for k, segs in enumerate(trees, start=1):
            tree = _largest_component(_render_tree(size, segs, width_scale, shift) & ~faz[layer])
            vessels[layer][tree & (vessels[layer] == 0)] = k
        capillaries = ndi.gaussian_filter(rng.normal(0, 1, (size, size)), 1.0)
        background = np.clip(70 + 60 * capillaries, 0, 255)
        img = np.where(vessels[layer] > 0, 210.0, background)
        img = np.where(faz[layer], 12.0, img) + rng.normal(0, 6, (size, size))
        images[layer] = np.clip(img, 0, 255).astype(np.uint8)
    return SyntheticOcta(images=images, vessels=vessels, faz=faz, n_vessels=n_vessels)


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = np.repeat(image[..., None], 3, axis=2)
    rgb[mask] = OVERLAY_GREEN
    return rgb


def write_layer_sequence_folder(
    folder: str | Path,
    case: SyntheticOcta,
    task: str,
    first_layer: int = 100,
    write_objects: bool = True,
) -> Path:
    """Write a case as composite PNGs in the SAM-OCTA2 layer-sequence layouts.

    ``task="faz"``: 3 panels ``overlay | image | FAZ mask``.
    ``task="rv"``: 4 panels ``region | region overlay | vessel overlay | image``
    plus, when ``write_objects``, one binary PNG per vessel in ``<layer>/NN.png``
    (``NN`` = vessel id - 1, as in the real data) and ``<layer>/objects.npy``.

    Returns the folder.
    """
    import imageio.v3 as iio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(case.images.shape[0]):
        name = str(first_layer + i)
        img = case.images[i]
        if task == "faz":
            mask = case.faz[i]
            panels = [_overlay(img, mask), _overlay(img, np.zeros_like(mask)),
                      _overlay((mask * 255).astype(np.uint8), np.zeros_like(mask))]
        elif task == "rv":
            vessel = case.vessels[i] > 0
            region = ndi.binary_dilation(vessel, iterations=4)
            panels = [_overlay((region * 255).astype(np.uint8), np.zeros_like(region)),
                      _overlay(img, region), _overlay(img, vessel),
                      _overlay(img, np.zeros_like(region))]
            if write_objects:
                sub = folder / name
                sub.mkdir(exist_ok=True)
                ids = [k for k in np.unique(case.vessels[i]) if k > 0]
                for k in ids:
                    iio.imwrite(sub / f"{k - 1:02d}.png", ((case.vessels[i] == k) * 255).astype(np.uint8))
                np.save(sub / "objects.npy", np.asarray(ids, np.int32) - 1)
        else:
            raise ValueError(f"task must be 'rv' or 'faz', got {task!r}")
        iio.imwrite(folder / f"{name}.png", np.concatenate(panels, axis=1))
    return folder
