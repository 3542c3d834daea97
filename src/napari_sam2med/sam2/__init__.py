"""Our own torch implementation of SAM2 and SAM2.1 (loads the official checkpoints strictly).

Names are imported lazily (PEP 562): the model registry (``list_models``, ``get_config``,
``MODEL_CONFIGS``) can be read without importing torch, e.g. to build the CLI parser.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_WHERE = {
    "build_model": "build", "load_model": "build", "load_weights": "build",
    "MODEL_CONFIGS": "configs", "MODEL_NAMES": "configs", "HieraConfig": "configs", "SAM2Config": "configs", "SLMConfig": "configs",
    "WeightsSpec": "configs", "Normalization": "configs", "get_config": "configs", "list_models": "configs",
    "autocast_context": "device", "pick_device": "device",
    "FrameFeatures": "model", "MemoryContext": "model", "PointInputs": "model", "SAM2Model": "model",
    "TrackOutput": "model",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
