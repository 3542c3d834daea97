"""Synthetic OBM-like capillary videos with ground-truth flow, prompts for them, and the fixed sets."""

from .generator import SyntheticConfig, SyntheticVideo, make_video
from .prompts import prompts_for
from .sets import LONG_MOTION, LONG_SEED0, LONG_SELECTION_SEED0, long_config, long_set, validation_set

__all__ = ["SyntheticConfig", "SyntheticVideo", "make_video", "prompts_for", "validation_set", "long_set",
           "long_config", "LONG_SEED0", "LONG_SELECTION_SEED0",
           "LONG_MOTION"]
