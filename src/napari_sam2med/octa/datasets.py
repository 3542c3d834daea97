"""Readers for OCTA-500 data as used by SAM-OCTA2.

Layer-sequence composites
-------------------------
Each layer of a SAM-OCTA2 layer sequence is one PNG holding square panels side
by side. The panel count is the image width divided by its height (panels are
square; the width must be an exact multiple of the height). Layouts, checked
by eye on OCTA-500 case 10301:

* 3 panels (``FAZ_LayerSequence``): ``overlay | image | FAZ mask`` — the image
  is panel 1 (grey), the mask panel 2 (white = FAZ).
* 4 panels (``RV_LayerSequence``): ``region mask | region overlay | vessel
  overlay | image`` — the image is panel 3 (grey); vessels are the green
  pixels of panel 2 (green minus red > 50); panel 0 (white) is the region of
  the layer in which vessels were annotated.
* 2 panels (``RV_Annotation``, ``ref_mask``): ``image-or-binary | mask``.

Per-vessel object masks ``<layer>/NN.png`` (binary, one per vessel; ``NN`` the
0-based vessel index, also listed in ``<layer>/objects.npy``) become one int32
label image per layer with id ``NN + 1`` (0 stays background).

3D FAZ labels (``GT_FAZ3D/<case>.mat``, MATLAB v7.3 = HDF5) hold ``FAZlabel``;
h5py shows it as ``(A, B, depth)`` (MATLAB's axes reversed). We return
``(depth, rows, cols)`` such that ``volume.any(axis=0)`` lines up with the 2D
``GT_FAZ`` map. The in-plane mirror that achieves this was measured on the
OCTA-500 files present (Dice of projected 3D label vs 2D GT): 3 mm cases
(304 px) need a left-right mirror (Dice 0.94, 0.69, 0.97 vs 0.86, 0.29, 0.93
unmirrored), 6 mm cases (400 px) an up-down mirror (0.90, 0.59, 0.84).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROJECTION_NAMES = ("FULL", "ILM_OPL", "OPL_BM")
GT_NAMES = ("FAZ", "LargeVessel", "Artery", "Vein", "Capillary", "AV", "CAVF")
#: Ground truths stored as class maps (kept as integer labels, not binarised).
MULTICLASS_GT = ("AV", "CAVF")
IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg")
_GREEN_MARGIN = 50


@dataclass
class LayerSequence:
    """A layer sequence of one case.

    Attributes
    ----------
    images : np.ndarray
        uint8 (L, H, W) grey layer images.
    masks : np.ndarray or None
        bool (L, H, W) target masks (vessels for RV, FAZ for FAZ).
    layer_names : list of str
        File stems, in layer order.
    task : str
        ``"rv"`` or ``"faz"``.
    objects : np.ndarray or None
        int32 (L, H, W) per-vessel labels read from ``<layer>/NN.png``.
    regions : np.ndarray or None
        bool (L, H, W) annotated region (RV composites).
    """

    images: np.ndarray
    masks: np.ndarray | None
    layer_names: list[str]
    task: str
    objects: np.ndarray | None = None
    regions: np.ndarray | None = None
    case: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class ProjectionSet:
    """The three en-face projections of one case, ordered FULL, ILM_OPL, OPL_BM."""

    images: np.ndarray
    names: tuple[str, ...] = PROJECTION_NAMES
    modality: str = "OCTA"
    case: str = ""
    ground_truth: dict[str, np.ndarray] = field(default_factory=dict)


def read_image(path: str | Path) -> np.ndarray:
    """Read a 2D image file (PNG/BMP/TIFF/JPG) as a numpy array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def to_grey(image: np.ndarray) -> np.ndarray:
    """First channel of an RGB(A) image, or the image itself when 2D."""
    if image.ndim == 3:
        return image[..., 0]
    if image.ndim != 2:
        raise ValueError(f"expected a 2D or RGB image, got shape {image.shape}")
    return image


def split_panels(composite: np.ndarray, n_panels: int | None = None) -> list[np.ndarray]:
    """Cut a composite image into its square side-by-side panels.

    Parameters
    ----------
    composite : np.ndarray
        (H, n*W) or (H, n*W, C) image.
    n_panels : int, optional
        Panel count; default ``width // height`` (panels are square).

    Returns
    -------
    list of np.ndarray
    """
    h, w = composite.shape[:2]
    if n_panels is None:
        if w % h:
            raise ValueError(f"composite width {w} is not a multiple of its height {h}")
        n_panels = w // h
    if n_panels < 1 or w % n_panels:
        raise ValueError(f"cannot split width {w} into {n_panels} equal panels")
    pw = w // n_panels
    return [composite[:, i * pw:(i + 1) * pw] for i in range(n_panels)]


def green_overlay_mask(panel: np.ndarray) -> np.ndarray:
    """Pixels of an RGB overlay panel painted green (G exceeds R by a margin)."""
    if panel.ndim != 3:
        raise ValueError("an overlay panel must be RGB")
    return panel[..., 1].astype(np.int16) - panel[..., 0].astype(np.int16) > _GREEN_MARGIN


def _layer_key(path: Path):
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else 0, path.stem)


def layer_files(folder: str | Path) -> list[Path]:
    """Composite PNGs of a layer-sequence folder sorted by their layer number."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such layer-sequence folder: {folder}")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png"), key=_layer_key)
    if not files:
        raise ValueError(f"no layer PNGs in {folder}")
    return files


def read_vessel_objects(layer_dir: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Combine per-vessel ``NN.png`` masks of one layer into int32 labels (id = NN + 1)."""
    labels = np.zeros(shape, np.int32)
    layer_dir = Path(layer_dir)
    if not layer_dir.is_dir():
        return labels
    for path in sorted(layer_dir.glob("[0-9]*.png")):
        mask = to_grey(read_image(path)) > 127
        if mask.shape != shape:
            raise ValueError(f"object mask {path} has shape {mask.shape}, expected {shape}")
        labels[mask & (labels == 0)] = int(path.stem) + 1
    return labels


def read_layer_sequence(folder: str | Path, task: str | None = None) -> LayerSequence:
    """Read a SAM-OCTA2 layer-sequence folder of composite PNGs.

    Parameters
    ----------
    folder : path
        ``.../FAZ_LayerSequence/<case>`` or ``.../RV_LayerSequence/<case>``.
    task : {"rv", "faz"}, optional
        Default: from the panel count (4 -> rv, 3 -> faz).

    Returns
    -------
    LayerSequence
    """
    files = layer_files(folder)
    first = read_image(files[0])
    n = len(split_panels(first))
    task = task or {4: "rv", 3: "faz"}.get(n)
    if task not in ("rv", "faz"):
        raise ValueError(f"{files[0].name}: {n} panels, expected 4 (RV) or 3 (FAZ)")
    expected = 4 if task == "rv" else 3
    if n != expected:
        raise ValueError(f"{files[0].name}: {n} panels but task {task!r} needs {expected}")
    images, masks, regions, objects = [], [], [], []
    for path in files:
        composite = read_image(path)
        if composite.ndim != 3:
            raise ValueError(f"{path.name}: composite must be RGB, got shape {composite.shape}")
        panels = split_panels(composite, expected)
        if task == "faz":
            images.append(to_grey(panels[1]))
            masks.append(to_grey(panels[2]) > 127)
        else:
            images.append(to_grey(panels[3]))
            masks.append(green_overlay_mask(panels[2]))
            regions.append(to_grey(panels[0]) > 127)
            objects.append(read_vessel_objects(path.with_suffix(""), images[-1].shape))
    has_objects = bool(objects) and any(o.any() for o in objects)
    return LayerSequence(
        images=np.stack(images).astype(np.uint8),
        masks=np.stack(masks),
        layer_names=[p.stem for p in files],
        task=task,
        objects=np.stack(objects) if has_objects else None,
        regions=np.stack(regions) if regions else None,
        case=Path(folder).name,
    )


def read_two_panel(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 2-panel composite (``RV_Annotation``, ``ref_mask``): (left, right) panels."""
    left, right = split_panels(read_image(path), 2)
    return left, right


def _find_case_file(folder: Path, case: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{case}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no image for case {case} in {folder}")


def list_cases(root: str | Path) -> list[str]:
    """Case ids that have a FULL projection under ``root/ProjectionMaps``."""
    base = Path(root) / "ProjectionMaps"
    for sub in ("FULL", "OCTA(FULL)"):
        if (base / sub).is_dir():
            return sorted(p.stem for p in (base / sub).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return []


def read_projections(root: str | Path, case: str, modality: str = "OCTA") -> ProjectionSet:
    """Read the FULL / ILM_OPL / OPL_BM projections of a case as a (3, H, W) stack.

    ``root`` holds ``ProjectionMaps/`` in either layout: ``FULL/<case>.bmp``
    (OCTA only) or ``OCTA(FULL)/<case>.bmp`` / ``OCT(FULL)/<case>.bmp``.
    """
    if modality not in ("OCTA", "OCT"):
        raise ValueError(f"modality must be 'OCTA' or 'OCT', got {modality!r}")
    base = Path(root) / "ProjectionMaps"
    if not base.is_dir():
        raise FileNotFoundError(f"no ProjectionMaps folder in {root}")
    images = []
    for name in PROJECTION_NAMES:
        candidates = [base / f"{modality}({name})"] + ([base / name] if modality == "OCTA" else [])
        folder = next((c for c in candidates if c.is_dir()), None)
        if folder is None:
            raise FileNotFoundError(f"no {modality} {name} projection folder in {base}")
        images.append(to_grey(read_image(_find_case_file(folder, case))))
    if len({im.shape for im in images}) != 1:
        raise ValueError(f"projections of case {case} differ in shape")
    return ProjectionSet(images=np.stack(images).astype(np.uint8), modality=modality, case=case)


def read_ground_truth(root: str | Path, case: str, name: str) -> np.ndarray:
    """Read ``root/GT_<name>/<case>.*``: bool mask, or uint8 classes for AV / CAVF."""
    if name not in GT_NAMES:
        raise ValueError(f"unknown ground truth {name!r}; choose from {GT_NAMES}")
    image = to_grey(read_image(_find_case_file(Path(root) / f"GT_{name}", case)))
    return image.astype(np.uint8) if name in MULTICLASS_GT else image > 0


def read_faz3d(path: str | Path, mirror: str | None = "auto") -> np.ndarray:
    """Read a 3D FAZ label (MATLAB v7.3) as bool ``(depth, rows, cols)``.

    Parameters
    ----------
    path : path
        ``GT_FAZ3D/<case>.mat``.
    mirror : {"auto", "lr", "ud", None}
        In-plane mirror so the depth projection matches the 2D ``GT_FAZ``;
        ``"auto"``: ``"lr"`` for 304-px (3 mm) volumes, ``"ud"`` otherwise
        (see the module docstring for the measurements).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "FAZlabel" not in f:
                raise ValueError(f"{path.name}: no 'FAZlabel' dataset (keys: {list(f.keys())})")
            raw = f["FAZlabel"][()]
    except OSError as exc:
        raise ValueError(f"{path.name}: not a MATLAB v7.3 (HDF5) file") from exc
    volume = np.moveaxis(raw > 0, 2, 0)  # (A, B, depth) -> (depth, A, B)
    if mirror == "auto":
        mirror = "lr" if volume.shape[1] == 304 else "ud"
    if mirror == "lr":
        volume = volume[:, :, ::-1]
    elif mirror == "ud":
        volume = volume[:, ::-1, :]
    elif mirror is not None:
        raise ValueError(f"mirror must be 'auto', 'lr', 'ud' or None, got {mirror!r}")
    return np.ascontiguousarray(volume)


def read_stack(path: str | Path) -> np.ndarray:
    """Read a plain (L, H, W) TIFF / zarr / npy stack into memory via ``napari_sam2med.io``."""
    from .. import io as sio

    reader = getattr(sio, "read_array", None)
    if reader is not None:
        data = reader(path)
    else:
        data = sio.open_stack(path).data
    data = np.asarray(data)
    if data.ndim == 4 and data.shape[-1] in (3, 4):
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{Path(path).name}: expected an (L, H, W) stack, got shape {data.shape}")
    return data
