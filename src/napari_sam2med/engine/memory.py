"""Per-object memory banks and the pluggable memory-selection policy.

A :class:`MemoryBank` holds, for one object, the conditioning slices (those with prompts)
and a bounded window of recently propagated slices. A :class:`MemoryPolicy` decides which
entries a slice attends to and which recent entries may be dropped; the default,
:class:`SAM2MemoryPolicy`, reproduces the official SAM2 video predictor's selection, so our
propagation equals it while storing only ``max(num_maskmem, max_obj_ptrs)`` recent slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..sam2.configs import SAM2Config
from ..sam2.model import MemoryContext

__all__ = ["MemoryEntry", "MemoryBank", "MemoryPolicy", "SAM2MemoryPolicy", "closest_conditioning"]


@dataclass
class MemoryEntry:
    """What one slice leaves in an object's memory.

    ``features`` are stored in bfloat16 (as the official predictor does) to halve storage.
    """

    features: torch.Tensor | None  # (1, mem_dim, H, W) bf16, None until encoded
    obj_ptr: torch.Tensor  # (1, C)
    low_res_logits: torch.Tensor  # (1, 1, S/4, S/4) float32
    score: torch.Tensor  # (1, 1) object score logit


@dataclass
class MemoryBank:
    """Memory of one object: conditioning entries plus a bounded recent window."""

    cond: dict[int, MemoryEntry] = field(default_factory=dict)
    recent: dict[int, MemoryEntry] = field(default_factory=dict)

    def clear_recent(self) -> None:
        self.recent.clear()


class MemoryPolicy(Protocol):
    """Chooses the memory a slice attends to and what recent memory to keep."""

    def select(self, frame: int, bank: MemoryBank, *, reverse: bool, num_frames: int,
               config: SAM2Config) -> MemoryContext:
        """Build the memory context for ``frame`` (the bank never holds ``frame`` itself)."""

    def evict(self, frame: int, bank: MemoryBank, *, reverse: bool, config: SAM2Config) -> None:
        """Drop recent entries that no later slice of this pass will select."""


def closest_conditioning(frame: int, cond: dict[int, MemoryEntry], max_num: int):
    """Split conditioning entries into (selected, unselected) by temporal closeness.

    With ``max_num == -1`` (SAM2's default) every conditioning slice is selected. Otherwise
    the nearest one before ``frame``, the nearest one at or after it, then the closest others.
    """
    if max_num == -1 or len(cond) <= max_num:
        return dict(cond), {}
    chosen: list[int] = []
    before = [t for t in cond if t < frame]
    after = [t for t in cond if t >= frame]
    if before:
        chosen.append(max(before))
    if after:
        chosen.append(min(after))
    rest = sorted((t for t in cond if t not in chosen), key=lambda t: abs(t - frame))
    chosen += rest[: max(max_num - len(chosen), 0)]
    selected = {t: cond[t] for t in cond if t in chosen}
    return selected, {t: e for t, e in cond.items() if t not in chosen}


class SAM2MemoryPolicy:
    """SAM2's selection: every conditioning slice, the last ``num_maskmem - 1`` slices, and
    object pointers of past conditioning slices plus the last ``max_obj_ptrs - 1`` slices."""

    def select(self, frame: int, bank: MemoryBank, *, reverse: bool, num_frames: int,
               config: SAM2Config) -> MemoryContext:
        step = 1 if reverse else -1  # direction towards the past of this pass
        selected, unselected = closest_conditioning(frame, bank.cond, config.max_cond_frames_in_attn)
        spatial = [(0, e.features) for e in selected.values()]
        for t_pos in range(1, config.num_maskmem):
            prev = frame + step * (config.num_maskmem - t_pos)
            entry = bank.recent.get(prev, unselected.get(prev))
            if entry is not None:
                spatial.append((t_pos, entry.features))

        n_ptr = min(num_frames, config.max_obj_ptrs_in_encoder)
        sign = -1 if reverse else 1
        pointers = []
        for t, e in selected.items():
            if config.only_obj_ptrs_in_the_past and (t < frame if reverse else t > frame):
                continue
            off = (frame - t) * sign if config.use_signed_tpos_enc_to_obj_ptrs else abs(frame - t)
            pointers.append((off, e.obj_ptr))
        for t_diff in range(1, n_ptr):
            t = frame + step * t_diff
            if t < 0 or t >= num_frames:
                break
            entry = bank.recent.get(t, unselected.get(t))
            if entry is not None:
                pointers.append((t_diff, entry.obj_ptr))
        return MemoryContext(spatial=spatial, pointers=pointers, ptr_tpos_max=max(n_ptr - 1, 1))

    def evict(self, frame: int, bank: MemoryBank, *, reverse: bool, config: SAM2Config) -> None:
        horizon = max(config.num_maskmem - 1, config.max_obj_ptrs_in_encoder - 1)
        for t in [t for t in bank.recent if abs(frame - t) >= horizon or (t < frame if reverse else t > frame)]:
            del bank.recent[t]
