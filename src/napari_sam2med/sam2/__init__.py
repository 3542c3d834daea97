"""Our own torch implementation of SAM2 and SAM2.1 (loads the official checkpoints strictly)."""

from .build import build_model, load_model, load_weights
from .configs import MODEL_CONFIGS, MODEL_NAMES, HieraConfig, SAM2Config, get_config
from .device import autocast_context, pick_device
from .model import FrameFeatures, MemoryContext, PointInputs, SAM2Model, TrackOutput

__all__ = [
    "build_model", "load_model", "load_weights", "MODEL_CONFIGS", "MODEL_NAMES", "HieraConfig", "SAM2Config",
    "get_config", "autocast_context", "pick_device", "FrameFeatures", "MemoryContext", "PointInputs",
    "SAM2Model", "TrackOutput",
]
