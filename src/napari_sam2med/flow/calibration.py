"""Flow calibration: check a (pixel size, frame rate) pair and convert px/frame to µm/s."""

from __future__ import annotations

import numpy as np

__all__ = ["check_calibration", "speed_um_per_s"]


def speed_um_per_s(speed_px: np.ndarray, pixel_size: float, fps: float) -> np.ndarray:
    """Convert px/frame to µm/s: ``speed * pixel_size [µm/px] * fps [frame/s]``."""
    return np.asarray(speed_px, dtype=np.float32) * np.float32(pixel_size * fps)


def check_calibration(pixel_size: float | None, fps: float | None) -> bool:
    """Validate a calibration; return whether speeds can be given in µm/s.

    Parameters
    ----------
    pixel_size : float or None
        Pixel size in µm.
    fps : float or None
        Frame rate in frames/s.

    Returns
    -------
    bool
        True when both are given (and positive), False when neither is.

    Raises
    ------
    ValueError
        When only one is given, or one is not a positive finite number.
    """
    if (pixel_size is None) != (fps is None):
        raise ValueError("give both pixel_size and fps for µm/s, or neither")
    if pixel_size is None:
        return False
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number, got {pixel_size}")
    if not (np.isfinite(fps) and fps > 0):  # type: ignore[arg-type]
        raise ValueError(f"fps must be a positive number, got {fps}")
    return True
