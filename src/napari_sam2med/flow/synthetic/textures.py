"""Red-cell texture sampled from real two-photon line scans (``SyntheticConfig(cell_texture="linescan")``).

A line scan is a kymograph: line ``t`` is the intensity along a capillary at time ``t``. At a
fixed position the cell train passes by at the recording's speed ``v`` (px/line), so the
time series there, laid out at ``v`` px per line, is a real spatial profile of cells and gaps
(real cell size, spacing and hematocrit), as long as the recording allows. We read the
profile at a random position and start, rescale it to the synthetic pixel size, and extrude
it across the vessel with a rounded cross-section (cells span a capillary).

Only ``kymflow_2p_linescan/20250722_A89_0002`` is used for textures; the two recordings of
the real-speed check (``benchmarks/flow_long_eval.LINESCANS``) are never sampled. The data
are read in place from ``shared/data/flow_linescans`` (never copied); without them
:func:`linescan_available` is False and the generator falls back to its procedural texture.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["TEXTURE_RECORDING", "linescan_root", "linescan_available", "linescan_texture"]

#: (file under flow_linescans/, reference speed in px/line) of the recording used for textures.
TEXTURE_RECORDING = ("kymflow_2p_linescan/20250722_A89_0002_TxHxW.tif", 4.2)
ENV_VAR = "SAM2MED_FLOW_LINESCANS"


def linescan_root() -> Optional[Path]:
    """``$SAM2MED_FLOW_LINESCANS``, else ``../shared/data/flow_linescans`` next to the repository or cwd."""
    here = Path(__file__).resolve()
    candidates = [os.environ.get(ENV_VAR, "")]
    candidates += [str(p / "../shared/data/flow_linescans") for p in (here.parents[4], Path.cwd())]
    for cand in candidates:
        if cand and (Path(cand) / TEXTURE_RECORDING[0]).is_file():
            return Path(cand).resolve()
    return None


def linescan_available() -> bool:
    """Whether the texture recording can be read."""
    return _kymograph() is not None


@functools.lru_cache(maxsize=1)
def _kymograph() -> Optional[np.ndarray]:
    """(T, W) float32 cell density in [0, 1] (cells are dark in the recording: 1 = cell)."""
    root = linescan_root()
    if root is None:
        return None
    import tifffile

    k = tifffile.imread(str(root / TEXTURE_RECORDING[0]))[:, 0].astype(np.float32)
    lo, hi = np.percentile(k, [2, 98], axis=0)
    return np.clip((hi - k) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


def linescan_texture(rng: np.random.Generator, length: int, width: float) -> Optional[np.ndarray]:
    """``(n_d, length)`` cell texture in (offset, arc length) space from the real line scan, or None.

    Parameters
    ----------
    rng : np.random.Generator
        Random source (position, start line, scale, cell tilt, contrast).
    length : int
        Texture period along the vessel in px.
    width : float
        Vessel diameter in px (the texture has ``ceil(width) + 4`` offset rows).

    Returns
    -------
    np.ndarray or None
        Values in [0, 1] (1 = cell); None when the recording is not available.
    """
    kymo = _kymograph()
    if kymo is None:
        return None
    n_lines_total, n_pos = kymo.shape
    scale = rng.uniform(0.3, 0.6)  # synthetic px per recording px (vessel ~5 um at ~1 um/px)
    spacing = TEXTURE_RECORDING[1] * scale  # synthetic px per line
    n_lines = int(np.ceil(length / spacing)) + 2
    if n_lines >= n_lines_total:
        raise ValueError(f"texture of {length} px needs {n_lines} lines; the recording has {n_lines_total}")
    t0 = int(rng.integers(0, n_lines_total - n_lines))
    series = kymo[t0 : t0 + n_lines, int(rng.integers(n_pos))]
    n_d = int(np.ceil(width)) + 4
    d = np.arange(n_d, dtype=np.float32) - n_d / 2 + 0.5
    tilt = rng.uniform(-0.6, 0.6)  # cells slightly slanted / bent across the vessel
    s = np.arange(length, dtype=np.float32)[None] + tilt * np.abs(d)[:, None]
    tex = np.interp(s.ravel() % length, np.arange(n_lines) * spacing, series).reshape(n_d, length)
    across = np.sqrt(np.clip(1.0 - (d / (width / 2 + 0.5)) ** 2, 0.0, 1.0))[:, None]
    return np.clip(tex * across * rng.uniform(1.0, 1.4), 0.0, 1.0).astype(np.float32)
