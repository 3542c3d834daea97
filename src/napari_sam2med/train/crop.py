"""Crop-around-the-prompt windows for training: the one rule lives in :mod:`..engine.crop`
(inference uses it too), re-exported here for the training code."""

from __future__ import annotations

from ..engine.crop import CropConfig, crop_window, cut, paste, window_from_box

__all__ = ["CropConfig", "crop_window", "window_from_box", "cut", "paste"]
