"""Write an evaluation's results: CSV tables, predicted masks, PNG overlays and a JSON summary.

Layout of ``EVAL_DIR`` (written as a whole into a temporary sibling folder and renamed when
complete, with ``io.writers.atomic_write``, so an error or Ctrl-C leaves nothing partial)::

    objects.csv     one row per object: volume, object, protocol, key_slice, slice_dice (2D, on the
                    prompted slice), dice, iou, hd95 [mm], surface_dice, over_propagation,
                    gt_voxels, pred_voxels, tolerance [mm], spacing (z x y x x, mm), gt/pred slices, seconds
    volumes.csv     one row per volume: the same scores for all objects together (foreground), plus
                    the mean object Dice and mean prompted-slice Dice
    slices.csv      per object and slice (where either mask is non-empty): Dice, ground-truth and
                    predicted pixels
    summary.json    the configuration, the model, means over volumes and objects
    masks/NAME.tif  predicted label volume (or .nii.gz / .nrrd, in the source's scanner geometry)
    overlays/NAME.png  rows of slices (key slices marked *), each: image | ground truth | prediction,
                    around the objects
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import write_labels
from ..io.writers import atomic_write
from .runner import EvalConfig, VolumeResult

__all__ = ["write_report", "overlay_image", "MASK_FORMATS", "summary"]

MASK_FORMATS = (".tif", ".nii.gz", ".nrrd")
#: Distinct colours per object id (RGB 0..255), cycled.
_PALETTE = np.array([(255, 64, 64), (64, 200, 255), (255, 210, 40), (120, 255, 90), (230, 90, 255),
                     (255, 140, 30), (40, 255, 200), (180, 180, 255)], np.float32)


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _finite_mean(values) -> float | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None


def summary(results: Sequence[VolumeResult], cfg: EvalConfig, meta: dict) -> dict:
    """Means over volumes and objects (HD95 means skip infinite values and say how many)."""
    objs = [r for res in results for r in res.object_rows]
    vols = [res.volume_row for res in results]

    def means(rows: list[dict]) -> dict:
        out = {k: _finite_mean(r[k] for r in rows) for k in ("dice", "iou", "surface_dice", "hd95", "over_propagation")}
        out["hd95_infinite"] = sum(1 for r in rows if not math.isfinite(r["hd95"]))
        return out

    cfg_json = {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(cfg).items()}
    return {"config": cfg_json, **meta, "volumes": len(vols), "objects": len(objs),
            "mean_volume": means(vols), "mean_object": {**means(objs),
                                                         "slice_dice": _finite_mean(r["slice_dice"] for r in objs)}}


def _colour(ids: np.ndarray) -> np.ndarray:
    return _PALETTE[(ids - 1) % len(_PALETTE)]


def _blend(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from skimage.segmentation import find_boundaries

    rgb = np.repeat(gray[..., None], 3, -1).astype(np.float32)
    fg = labels > 0
    if fg.any():
        col = _colour(labels[fg])
        rgb[fg] = 0.55 * rgb[fg] + 0.45 * col
        edge = find_boundaries(labels, mode="inner") & fg
        rgb[edge] = _colour(labels[edge])
    return rgb


def _overlay_slices(res: VolumeResult, max_rows: int = 6) -> list[int]:
    """Key slices, the first and last ground-truth slices, and predicted slices beyond them."""
    z_gt = np.flatnonzero(res.gt.any(axis=(1, 2)))
    z_pred = np.flatnonzero(res.labels.any(axis=(1, 2)))
    picks = list(res.key_slices.values()) + [int(z_gt[0]), int(z_gt[-1])]
    extra = [z for z in z_pred if z < z_gt[0] or z > z_gt[-1]]
    if extra:
        picks += [int(extra[0]), int(extra[-1])]
    return sorted(set(picks))[:max_rows]


def _focus(res: VolumeResult, slices: Sequence[int], min_side: int = 96) -> tuple[slice, slice]:
    """The region around the objects (ground truth and prediction) on ``slices``, half its size again
    as margin, at least ``min_side`` px: small lesions stay visible on a 512 px slice."""
    h, w = res.gt.shape[1:]
    fg = (res.gt[list(slices)] > 0) | (res.labels[list(slices)] > 0)
    if not fg.any():
        return slice(0, h), slice(0, w)
    rows, cols = np.nonzero(fg.any(axis=0))
    side = max(int(1.5 * max(np.ptp(rows) + 1, np.ptp(cols) + 1)), min_side)
    if side >= max(h, w):
        return slice(0, h), slice(0, w)
    r0 = int(np.clip((rows.min() + rows.max()) // 2 - side // 2, 0, max(h - side, 0)))
    c0 = int(np.clip((cols.min() + cols.max()) // 2 - side // 2, 0, max(w - side, 0)))
    return slice(r0, r0 + side), slice(c0, c0 + side)


def overlay_image(gray01: Sequence[np.ndarray], res: VolumeResult, slices: Sequence[int] | None = None,
                  panel: int = 256) -> np.ndarray:
    """uint8 RGB image: one row per slice, columns image | ground truth | prediction.

    ``gray01[z]`` is slice ``z`` as float (Y, X) in [0, 1]. Panels show the region around the
    objects (see :func:`_focus`), resized to about ``panel`` pixels; each row is labelled with its
    slice index (``*`` marks a prompted slice).
    """
    from PIL import Image, ImageDraw

    slices = _overlay_slices(res) if slices is None else list(slices)
    rs, cs = _focus(res, slices)
    rows = []
    for z in slices:
        g = np.clip(np.asarray(gray01[z], np.float32)[rs, cs], 0, 1) * 255
        row = np.concatenate([np.repeat(g[..., None], 3, -1), _blend(g, res.gt[z][rs, cs]),
                              _blend(g, res.labels[z][rs, cs])], 1)
        row = np.clip(row, 0, 255).astype(np.uint8)
        scale = panel / max(g.shape)
        im = Image.fromarray(row).resize((max(1, round(row.shape[1] * scale)), max(1, round(row.shape[0] * scale))),
                                         Image.NEAREST if scale > 1 else Image.BILINEAR)
        mark = "*" if z in res.key_slices.values() else ""
        ImageDraw.Draw(im).text((4, 2), f"z={z}{mark}", fill=(255, 255, 0))
        rows.append(np.asarray(im))
    return np.concatenate(rows, 0)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_report(out_dir: str | Path, results: Sequence[VolumeResult], cfg: EvalConfig, meta: dict,
                 gray01: dict[str, Sequence[np.ndarray]] | None = None, mask_format: str = ".tif",
                 geometries: dict | None = None) -> Path:
    """Write the whole ``EVAL_DIR`` atomically (see the module docstring).

    Parameters
    ----------
    out_dir : path
        The folder to create (replaced only when complete).
    results : list of VolumeResult
        From :func:`.runner.evaluate`.
    cfg : EvalConfig
        The run's configuration (recorded).
    meta : dict
        Model, checkpoint, data, timing: recorded in ``summary.json``.
    gray01 : dict, optional
        ``{volume name: slices as float (Y, X) in [0, 1]}`` for the overlays; none written without it.
    mask_format : str
        ``.tif``, ``.nii.gz`` or ``.nrrd``.
    geometries : dict, optional
        ``{volume name: io Geometry}`` of the sources, for NIfTI/NRRD masks.
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
    geometries = geometries or {}

    def write(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "masks").mkdir()
        _write_csv(tmp / "objects.csv", [r for res in results for r in res.object_rows])
        _write_csv(tmp / "volumes.csv", [res.volume_row for res in results])
        _write_csv(tmp / "slices.csv", [r for res in results for r in res.slice_rows])
        (tmp / "summary.json").write_text(json.dumps(summary(results, cfg, meta), indent=2, default=str) + "\n")
        for res in results:
            labels = res.labels.astype(np.uint8 if res.labels.max() < 256 else np.uint16)
            path = tmp / "masks" / f"{_safe(res.name)}{mask_format}"
            geometry = geometries.get(res.name) if mask_format != ".tif" else None
            write_labels(path, labels, scale=None if geometry is not None else res.spacing, geometry=geometry)
        if gray01:
            from PIL import Image

            (tmp / "overlays").mkdir()
            for res in results:
                if res.name in gray01:
                    Image.fromarray(overlay_image(gray01[res.name], res)).save(tmp / "overlays" / f"{_safe(res.name)}.png")

    return atomic_write(out_dir, write)
