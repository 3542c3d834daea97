"""napari writer hooks for Labels layers: TIFF, Zarr and NIfTI, integer dtype kept exactly.

TIFF and Zarr go through :func:`napari_sam2med.io.write_labels` (atomic);
NIfTI is written here with nibabel in the same ``(Z, Y, X)`` <-> ``(X, Y, Z)``
convention the reader uses, with the layer scale as voxel size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _scale(meta: dict, ndim: int) -> list[float] | None:
    scale = meta.get("scale")
    if scale is None:
        return None
    values = [float(s) for s in scale]
    return values if len(values) == ndim and all(v > 0 for v in values) else None


def _write_nifti(path: Path, labels: np.ndarray, scale: Sequence[float] | None) -> Path:
    import nibabel as nib

    from .io import atomic_write

    if labels.ndim not in (2, 3):
        raise ValueError(f"NIfTI labels must be 2D or 3D, got shape {labels.shape}")
    volume = labels[None] if labels.ndim == 2 else labels
    spacing = list(scale)[-3:] if scale is not None and len(scale) >= 3 else [1.0, 1.0, 1.0]
    z, y, x = ([1.0] * 3 + spacing)[-3:]
    image = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), np.diag([x, y, z, 1.0]))
    image.header.set_data_dtype(volume.dtype)

    payload = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        import gzip

        payload = gzip.compress(payload, compresslevel=6)

    def write(tmp: Path) -> None:
        # Bytes, not nib.save: the temporary name lacks the suffix nibabel keys on.
        tmp.write_bytes(payload)

    return atomic_write(path, write)


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """napari single-layer writer for Labels: ``.tif/.tiff``, ``.zarr``, ``.nii/.nii.gz``."""
    from .io import write_labels

    target = Path(path)
    labels = np.asarray(data)
    if labels.dtype.kind not in "uib":
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    scale = _scale(meta, labels.ndim)
    if target.name.lower().endswith(NIFTI_SUFFIXES):
        written = _write_nifti(target, labels, scale)
    else:
        written = write_labels(target, labels, scale=scale)
    return [str(written)]
