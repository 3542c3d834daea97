"""napari layer-data tuples for a flow result (no napari import).

Used by the SAM2Flow dock widget to show flow vectors and a speed image over
the video; plain tuples so it can be built in a worker thread and tested
without a viewer.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .calibration import check_calibration

__all__ = ["flow_layer_data"]


def flow_layer_data(
    flow: Any,
    roi_ids: np.ndarray,
    *,
    grid_step: int = 6,
    pixel_size: float | None = None,
    fps: float | None = None,
    scale: Sequence[float] | None = None,
    name: str = "flow",
) -> list[tuple]:
    """napari layer-data tuples for a flow result (no napari import).

    Parameters
    ----------
    flow : array-like
        ``(T-1, H, W, 2)`` flow (numpy or zarr), read one pair at a time.
    roi_ids : np.ndarray
        ``(H, W)`` ROI ids; vectors are drawn on grid points inside the ROI.
    grid_step : int
        Grid spacing in px of the subsampled vectors.
    pixel_size, fps : float, optional
        When both are given speeds are in µm/s, else px/frame.
    scale : sequence of 3 floats, optional
        ``(t, row, col)`` layer scale (e.g. the video layer's).
    name : str
        Layer name prefix.

    Returns
    -------
    list of tuple
        ``[(vectors (n,2,3), meta, "vectors"), (speed (T-1,H,W) float32, meta, "image")]``;
        vectors hold ``[[t, row, col], [0, d_row, d_col]]``.
    """
    n_pairs, height, width = (int(s) for s in flow.shape[:3])
    calibrated = check_calibration(pixel_size, fps)
    factor = float(pixel_size * fps) if calibrated else 1.0  # type: ignore[operator]
    unit = "µm/s" if calibrated else "px/frame"
    step = max(int(grid_step), 1)
    grid = np.zeros((height, width), dtype=bool)
    grid[step // 2 :: step, step // 2 :: step] = True
    rows, cols = np.nonzero(grid & (np.asarray(roi_ids) > 0))
    vectors = np.zeros((n_pairs * rows.size, 2, 3), dtype=np.float32)
    vec_speed = np.zeros(n_pairs * rows.size, dtype=np.float32)
    speed_img = np.zeros((n_pairs, height, width), dtype=np.float32)
    for t in range(n_pairs):
        f = np.asarray(flow[t], dtype=np.float32)
        speed_img[t] = np.hypot(f[..., 0], f[..., 1]) * factor
        sl = slice(t * rows.size, (t + 1) * rows.size)
        vectors[sl, 0, 0] = t
        vectors[sl, 0, 1] = rows
        vectors[sl, 0, 2] = cols
        vectors[sl, 1, 1:] = f[rows, cols]
        vec_speed[sl] = speed_img[t, rows, cols]
    layer_scale = tuple(float(s) for s in (scale if scale is not None else (1.0, 1.0, 1.0)))
    vmax = float(np.nanmax(speed_img)) if speed_img.size else 1.0
    vec_meta = {
        "name": f"{name} vectors",
        "features": {"speed": vec_speed},
        "edge_color": "speed",
        "edge_colormap": "viridis",
        "edge_width": 0.4,
        "length": 1.0,
        "scale": layer_scale,
        "metadata": {"unit": unit},
    }
    img_meta = {
        "name": f"{name} speed ({unit})",
        "colormap": "inferno",
        "contrast_limits": (0.0, vmax if vmax > 0 else 1.0),
        "blending": "additive",
        "scale": layer_scale,
        "metadata": {"unit": unit},
    }
    return [(vectors, vec_meta, "vectors"), (speed_img, img_meta, "image")]
