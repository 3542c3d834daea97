"""Sessions, prompts, memory policies and propagation (headless).

Names are imported lazily (PEP 562), so ``from napari_sam2med.engine import run_to_end`` or
``from napari_sam2med.engine.progress import run_to_end`` does not import torch; only the names
that need the model (``Session``, ``propagate``, ...) do.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_WHERE = {
    "MemoryBank": "memory", "MemoryEntry": "memory", "MemoryPolicy": "memory", "SAM2MemoryPolicy": "memory",
    "SLMMemoryPolicy": "memory", "MemoryKind": "memory", "make_policy": "memory",
    "FeatureCache": "preprocess", "frame_to_tensor": "preprocess",
    "PromptSet": "prompts", "SlicePrompt": "prompts",
    "DIRECTIONS": "propagation", "PropagationStep": "propagation", "propagate": "propagation",
    "write_slice": "propagation", "merge_masks": "propagation", "exclusive_masks": "propagation",
    "run_to_end": "progress",
    "Session": "session", "SliceResult": "session",
}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
