"""Readers of scanner-space volume formats: NIfTI, NRRD and MedSAM2 ``.npz``.

Each returns ``(array, geometry)``: the volume as ``(Z, Y, X)`` (lazy where the
format allows) and its :class:`~napari_sam2med.io.geometry.Geometry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .geometry import Geometry, from_itk, from_nifti
from .lazy import LazySlices

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd",)
NPZ_SUFFIXES = (".npz",)
#: Keys of MedSAM2-style npz files.
NPZ_IMAGE_KEY, NPZ_LABELS_KEY = "imgs", "gts"


def nifti_image(path: Path) -> Any:
    import nibabel

    try:
        return nibabel.load(str(path))
    except Exception as exc:
        raise ValueError(f"cannot read NIfTI {path}: {exc}") from exc


def read_nifti(path: Path) -> tuple[LazySlices, Geometry]:
    """NIfTI volume as lazy ``(Z, Y, X)`` slices (nibabel's ``(X, Y, Z)`` transposed)."""
    image = nifti_image(path)
    proxy = image.dataobj
    shape = tuple(proxy.shape)
    if len(shape) > 3 and all(s == 1 for s in shape[3:]):
        extra = (0,) * (len(shape) - 3)
    elif len(shape) == 3:
        extra = ()
    else:
        raise ValueError(f"NIfTI {path} has shape {shape}; expected a 3D volume (X, Y, Z)")
    try:
        dtype = np.asarray(proxy[(slice(0, 1),) * len(shape)]).dtype
    except Exception as exc:
        raise ValueError(f"cannot read NIfTI data of {path}: {exc}") from exc

    def read_slice(z: int) -> np.ndarray:
        # nibabel order is (X, Y, Z): plane z is (X, Y), transposed to (Y, X).
        return np.asarray(proxy[(slice(None), slice(None), z, *extra)]).T

    array = LazySlices(read_slice, shape[2], (shape[1], shape[0]), dtype)
    return array, from_nifti(image, array.shape, name=path.name)


def read_npz(path: Path) -> tuple[np.ndarray, Geometry | None, np.ndarray | None]:
    """MedSAM2 ``.npz``: ``imgs`` ``(Z, Y, X)``, optional ``gts`` and ITK ``spacing/direction/origin``.

    ``spacing`` and ``origin`` are in ITK ``(x, y, z)`` order and ``direction`` is
    the row-major 3x3 ITK direction matrix (LPS), as SimpleITK writes them
    (checked on the MedSAM2 CT lesion files: spacing ``[0.31, 0.31, 5.0]`` for
    ``imgs`` of shape ``(16, 512, 512)``).

    Returns
    -------
    tuple
        ``(imgs, geometry or None, gts or None)``.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if NPZ_IMAGE_KEY not in keys:
                raise ValueError(f"{path.name} has no {NPZ_IMAGE_KEY!r} array (keys: {', '.join(sorted(keys))})")
            images = npz[NPZ_IMAGE_KEY]
            labels = npz[NPZ_LABELS_KEY] if NPZ_LABELS_KEY in keys else None
            meta = {k: npz[k] for k in ("spacing", "direction", "origin") if k in keys}
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot read .npz file {path}: {exc}") from exc
    if images.ndim != 3:
        raise ValueError(f"{path.name}: {NPZ_IMAGE_KEY!r} has shape {images.shape}; expected (Z, Y, X)")
    if labels is not None and labels.shape != images.shape:
        raise ValueError(f"{path.name}: {NPZ_LABELS_KEY!r} shape {labels.shape} differs from "
                         f"{NPZ_IMAGE_KEY!r} {images.shape}")
    geometry = None
    if "spacing" in meta:
        geometry = from_itk(meta["spacing"], meta.get("direction", np.eye(3).ravel()),
                            meta.get("origin", np.zeros(3)), images.shape, source="npz")
    return images, geometry, labels


_NRRD_SPACES = {"left-posterior-superior": np.diag([-1.0, -1.0, 1.0]),
                "right-anterior-superior": np.eye(3),
                "left-anterior-superior": np.diag([-1.0, 1.0, 1.0])}


def read_nrrd(path: Path) -> tuple[np.ndarray, Geometry | None]:
    """NRRD volume as ``(Z, Y, X)`` with its space directions and origin (pynrrd)."""
    import nrrd

    try:
        data, header = nrrd.read(str(path), index_order="C")
    except Exception as exc:
        raise ValueError(f"cannot read NRRD {path}: {exc}") from exc
    if data.ndim != 3:
        raise ValueError(f"NRRD {path.name} has shape {data.shape}; expected a 3D volume")
    directions = header.get("space directions")
    if directions is None:
        return data, None
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space not in _NRRD_SPACES:
        raise ValueError(f"NRRD {path.name}: unsupported space {space!r}")
    # pynrrd lists directions fastest axis first (x, y, z); we index (z, y, x).
    matrix = np.asarray(directions, dtype=np.float64)
    to_ras = _NRRD_SPACES[space]
    affine = np.eye(4)
    affine[:3, :3] = to_ras @ matrix[::-1].T
    affine[:3, 3] = to_ras @ np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    return data, Geometry(affine, data.shape, source="nrrd")
