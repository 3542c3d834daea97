"""Labelled volumes for training: discovery, lazy reading and a split by volume.

Accepted ``--data`` entries (each may be repeated / mixed):

* a MedSAM2-style ``.npz`` file with ``imgs`` (Z, Y, X), ``gts`` (Z, Y, X) and optional
  ``spacing``, or a folder of such files;
* an explicit pair ``IMAGE=LABELS`` of volume files (NIfTI, TIFF, zarr, .npy);
* a folder with ``images/`` and ``labels/`` holding volume files of the same names;
* the SAM2 / SLM-SAM2 folder layout ``images/<vol>/00000.jpg`` + ``masks/<vol>/00000.png``
  with optional ``train.txt`` / ``val.txt`` (one volume name per line);
* ``synthetic:COUNT[:SEED[:SIDE[:DEPTH]]]``: generated volumes with ground truth (``train/synthetic.py``);
* ``octa-faz:ROOT``: OCTA-500 cases (``ROOT/ProjectionMaps``, ``ROOT/GT_FAZ``) read by ``octa/``, the three
  OCTA projections as slices and the foveal avascular zone as the object.

Volumes stay lazy: image slices are read through :class:`~napari_sam2med.io.FrameStack`
(the same normalisation as inference) and label volumes only when first sampled.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import FrameStack, LazySlices, read_array, stack_name

__all__ = ["LabeledVolume", "discover", "split_by_volume", "VOLUME_SUFFIXES"]

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".tif", ".tiff", ".npy", ".zarr")
_IMG_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@dataclass
class LabeledVolume:
    """One image volume with its label volume (0 background, one id per object).

    Parameters
    ----------
    name : str
        Volume name (used for the split and the run card).
    image : array-like
        (Z, Y, X) or (Z, Y, X, C) image, possibly lazy.
    labels : array-like
        (Z, Y, X) integer labels, possibly lazy.
    spacing : tuple, optional
        Voxel spacing (z, y, x).
    split : str, optional
        ``"train"`` or ``"val"`` when the source says so (SAM2 folder layout).
    """

    name: str
    image: Any
    labels: Any
    spacing: tuple[float, float, float] | None = None
    split: str | None = None
    source: str = ""
    generated: bool = False
    group: int = 0
    _label_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        shape = tuple(self.image.shape)
        lshape = tuple(self.labels.shape)
        if len(lshape) != 3:
            raise ValueError(f"{self.name}: labels must be (Z, Y, X), got shape {lshape}")
        if shape[:3] != lshape:
            raise ValueError(f"{self.name}: image shape {shape[:3]} and label shape {lshape} differ")

    @cached_property
    def stack(self) -> FrameStack:
        return FrameStack(self.image, name=self.name)

    @property
    def num_slices(self) -> int:
        return int(self.labels.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.labels.shape[1]), int(self.labels.shape[2])

    def frame(self, z: int) -> np.ndarray:
        """Slice ``z`` as float32 (Y, X, 3) in [0, 1] (inference's normalisation)."""
        return self.stack.normalized(int(z))

    def label(self, z: int) -> np.ndarray:
        """Label slice ``z`` as int32 (Y, X)."""
        z = int(z)
        if z not in self._label_cache:
            if len(self._label_cache) > 64:
                self._label_cache.clear()
            self._label_cache[z] = np.asarray(self.labels[z]).astype(np.int32)
        return self._label_cache[z]

    @cached_property
    def presence(self) -> dict[int, np.ndarray]:
        """``{object id: bool (Z,) presence per slice}`` (reads the label volume once)."""
        out: dict[int, np.ndarray] = {}
        for z in range(self.num_slices):
            for i in np.unique(self.label(z)):
                if i > 0:
                    out.setdefault(int(i), np.zeros(self.num_slices, bool))[z] = True
        if not out:
            raise ValueError(f"{self.name}: the label volume is empty")
        return out


def _npz_volume(path: Path) -> LabeledVolume:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"imgs", "gts"} <= keys:
                raise ValueError(f"{path.name}: an .npz needs 'imgs' and 'gts' arrays, found {sorted(keys)}")
            imgs, gts = z["imgs"], z["gts"]
            spacing = tuple(float(s) for s in z["spacing"]) if "spacing" in keys else None
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    if imgs.ndim == 2:
        imgs, gts = imgs[None], gts[None]
    return LabeledVolume(path.stem, imgs, gts.astype(np.int32), spacing, source=str(path))


def _read_plane(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def _plane_stack(files: list[Path]) -> LazySlices:
    first = _read_plane(files[0])
    return LazySlices(lambda i: _read_plane(files[i]), len(files), first.shape, first.dtype)


def _sam2_folder(root: Path) -> list[LabeledVolume]:
    lists = {}
    for split in ("train", "val"):
        f = root / f"{split}.txt"
        if f.is_file():
            lists[split] = {ln.strip() for ln in f.read_text().splitlines() if ln.strip()}
    vols = []
    for vdir in sorted(p for p in (root / "images").iterdir() if p.is_dir()):
        name = vdir.name
        if lists and not any(name in s for s in lists.values()):
            continue
        imgs = sorted(p for p in vdir.iterdir() if p.suffix.lower() in _IMG_SUFFIXES)
        mdir = root / "masks" / name
        if not imgs:
            continue
        if not mdir.is_dir():
            raise ValueError(f"{root}: no masks/{name} folder for images/{name}")
        masks = [mdir / (p.stem + ".png") for p in imgs]
        missing = [m.name for m in masks if not m.is_file()]
        if missing:
            raise ValueError(f"{root}: masks/{name} lacks {missing[0]} (and {len(missing) - 1} more)")
        image = _plane_stack(imgs)
        lab = _plane_stack(masks)
        if lab.ndim == 4:  # palette PNGs read as RGB: take the first channel
            lab = LazySlices(lambda i, s=lab: s[i][..., 0], lab.shape[0], lab.shape[1:3], lab.dtype)
        split = next((s for s, names in lists.items() if name in names), None)
        vols.append(LabeledVolume(name, image, lab, None, split=split, source=str(vdir)))
    return vols


def _pair(image_path: Path, label_path: Path) -> LabeledVolume:
    for p in (image_path, label_path):
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
    from ..io import read_spacing

    try:
        spacing = read_spacing(image_path)
    except Exception:  # spacing is optional metadata
        spacing = None
    return LabeledVolume(stack_name(image_path), read_array(image_path), read_array(label_path), spacing,
                         source=str(image_path))


def _is_volume_file(p: Path) -> bool:
    return p.name.lower().endswith(VOLUME_SUFFIXES)


class _Generated:
    """Array-like of one synthetic volume (image or labels), generated on first read.

    Volumes of a pool share a small cache, so a pool of thousands costs the memory of a few.
    """

    _cache: dict = {}
    _order: list = []

    def __init__(self, cfg, seed: int, which: int, shape, dtype):
        self.cfg, self.seed, self.which = cfg, int(seed), which
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim = 3

    def _volume(self):
        from .synthetic import make_volume  # the synthetic volume generator (train/synthetic.py)

        key = (id(self.cfg), self.seed)
        if key not in self._cache:
            if len(self._order) >= 8:
                self._cache.pop(self._order.pop(0), None)
            self._cache[key] = make_volume(self.cfg, seed=self.seed)
            self._order.append(key)
        return self._cache[key][self.which]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        return np.asarray(self._volume()[key], dtype=self.dtype)

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self._volume(), dtype=self.dtype)
        return a if dtype is None else a.astype(dtype)


def _synthetic(spec: str) -> list[LabeledVolume]:
    """``synthetic:COUNT[:SEED[:SIDE[:DEPTH]]]``: lazily generated volumes (train/synthetic.py)."""
    from .synthetic import SyntheticVolumeConfig

    parts = spec.split(":")
    try:
        count = int(parts[1]) if len(parts) > 1 and parts[1] else 8
        seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
        side = int(parts[3]) if len(parts) > 3 and parts[3] else 128
        depth = int(parts[4]) if len(parts) > 4 and parts[4] else 16
    except ValueError:
        raise ValueError(f"bad synthetic spec {spec!r}: use synthetic:COUNT[:SEED[:SIDE[:DEPTH]]]") from None
    cfg = SyntheticVolumeConfig(shape=(depth, side, side))
    return [LabeledVolume(f"synthetic-{side}-{seed + k}", _Generated(cfg, seed + k, 0, cfg.shape, np.uint8),
                          _Generated(cfg, seed + k, 1, cfg.shape, np.int32), source=f"synthetic seed {seed + k}",
                          generated=True)
            for k in range(count)]


def discover(entries: Sequence[str | Path]) -> list[LabeledVolume]:
    """Find the labelled volumes named by ``--data`` entries (see the module docstring).

    Raises
    ------
    FileNotFoundError
        A path does not exist.
    ValueError
        A path holds no recognisable labelled data, or image and labels do not match.
    """
    vols: list[LabeledVolume] = []
    for group, entry in enumerate(entries):
        start = len(vols)
        _discover_one(str(entry), vols)
        for v in vols[start:]:
            v.group = group
    names = [v.name for v in vols]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate volume names: {', '.join(sorted(dup))}")
    if not vols:
        raise ValueError("no labelled volumes found")
    return vols


def _octa_faz(root: Path) -> list[LabeledVolume]:
    """``octa-faz:ROOT``: each OCTA-500 case as a 3-slice volume (FULL, ILM_OPL, OPL_BM OCTA projections)
    whose label is the 2D foveal avascular zone (``GT_FAZ``) on every slice."""
    from ..octa.datasets import list_cases, read_ground_truth, read_projections

    cases = list_cases(root)
    if not cases:
        raise ValueError(f"{root}: no OCTA-500 cases (expected ProjectionMaps/ and GT_FAZ/)")
    vols = []
    for case in cases:
        images = read_projections(root, case).images  # (3, H, W) uint8
        faz = read_ground_truth(root, case, "FAZ").astype(np.int32)
        vols.append(LabeledVolume(f"octa-faz-{case}", images, np.repeat(faz[None], len(images), 0),
                                  source=f"{root} case {case}"))
    return vols


def _discover_one(text: str, vols: list[LabeledVolume]) -> None:
    if text.startswith("synthetic"):
        vols += _synthetic(text)
        return
    if text.startswith("octa-faz:"):
        vols += _octa_faz(Path(text[len("octa-faz:"):]).expanduser())
        return
    if "=" in text:
        img, lab = text.split("=", 1)
        vols.append(_pair(Path(img).expanduser(), Path(lab).expanduser()))
        return
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.is_file() and path.suffix.lower() == ".npz":
        vols.append(_npz_volume(path))
    elif path.is_dir() and (path / "images").is_dir() and (path / "masks").is_dir():
        vols += _sam2_folder(path)
    elif path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir():
        for img in sorted(p for p in (path / "images").iterdir() if _is_volume_file(p)):
            lab = path / "labels" / img.name
            if not lab.exists():
                raise ValueError(f"{path}: labels/{img.name} is missing for images/{img.name}")
            vols.append(_pair(img, lab))
    elif path.is_dir() and any(p.suffix.lower() == ".npz" for p in path.iterdir()):
        vols += [_npz_volume(p) for p in sorted(path.glob("*.npz"))]
    else:
        raise ValueError(f"{path}: not an .npz, an IMAGE=LABELS pair, nor a folder with images/ and "
                         "labels/ or masks/")


def split_by_volume(vols: list[LabeledVolume], val: Sequence[str] | int | float = 0.2,
                    seed: int = 0) -> tuple[list[LabeledVolume], list[LabeledVolume]]:
    """Split volumes (never slices) into training and validation sets.

    Parameters
    ----------
    val : names, int or float
        Validation volume names, a count, or a fraction. Volumes whose source already says
        ``train`` / ``val`` (``train.txt`` / ``val.txt``) keep that assignment.
    seed : int
        Shuffle seed for counts and fractions.
    """
    fixed_train = [v for v in vols if v.split == "train"]
    fixed_val = [v for v in vols if v.split == "val"]
    free = [v for v in vols if v.split is None]
    if isinstance(val, (list, tuple, set)):
        names = set(val)
        unknown = names - {v.name for v in vols}
        if unknown:
            raise ValueError(f"validation volumes not found: {', '.join(sorted(unknown))}")
        return ([v for v in fixed_train + free if v.name not in names],
                fixed_val + [v for v in free if v.name in names])
    n = int(val) if isinstance(val, int) else int(round(float(val) * len(free)))
    order = list(free)
    random.Random(seed).shuffle(order)
    n = min(n, max(len(order) - 1, 0)) if not fixed_train else min(n, len(order))
    return fixed_train + order[n:], fixed_val + order[:n]
