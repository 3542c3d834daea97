"""Sessions, prompts, memory policies and propagation (headless)."""

from .memory import MemoryBank, MemoryEntry, MemoryPolicy, SAM2MemoryPolicy
from .preprocess import FeatureCache, frame_to_tensor
from .prompts import PromptSet, SlicePrompt
from .propagation import (
    DIRECTIONS, PropagationStep, exclusive_masks, merge_masks, propagate, run_to_end, write_slice,
)
from .session import Session, SliceResult

__all__ = [
    "MemoryBank", "MemoryEntry", "MemoryPolicy", "SAM2MemoryPolicy", "FeatureCache", "frame_to_tensor",
    "PromptSet", "SlicePrompt", "DIRECTIONS", "PropagationStep", "propagate", "run_to_end", "write_slice",
    "merge_masks", "exclusive_masks",
    "Session", "SliceResult",
]
