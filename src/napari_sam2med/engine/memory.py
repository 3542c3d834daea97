"""Per-object memory banks and the pluggable memory-selection policy.

A :class:`MemoryBank` holds, for one object, the conditioning slices (those with prompts)
and a bounded window of recently propagated slices. A :class:`MemoryPolicy` decides which
entries a slice attends to and which recent entries may be dropped; the default,
:class:`SAM2MemoryPolicy`, reproduces the official SAM2 video predictor's selection, so our
propagation equals it while storing only ``max(num_maskmem, max_obj_ptrs)`` recent slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import torch

from ..sam2.configs import SAM2Config
from ..sam2.model import MemoryContext

__all__ = ["MemoryEntry", "MemoryBank", "MemoryPolicy", "SAM2MemoryPolicy", "SLMMemoryPolicy", "MemoryKind",
           "make_policy", "closest_conditioning"]


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


class SLMMemoryPolicy(SAM2MemoryPolicy):
    """SLM-SAM2's short-long memory: SAM2's selection (the long memory) plus a short-term context.

    The short context holds the memory features and object pointers of only the ``recent_n``
    slices just before ``frame`` in this pass, whether propagated or prompted, and no other
    conditioning slice. Temporal encodings are SAM2's: a slice ``d`` steps back gets the
    spatial position ``num_maskmem - d`` and the pointer offset ``d``. Nothing more is stored than
    for SAM2 unless ``recent_n`` exceeds SAM2's horizon, so memory stays bounded.

    Parameters
    ----------
    recent_n : int, optional
        Slices in the short memory; default the model's ``config.slm.recent_n`` (1).
    """

    def __init__(self, recent_n: int | None = None):
        if recent_n is not None and recent_n < 1:
            raise ValueError(f"recent_n must be at least 1, got {recent_n}")
        self.recent_n = recent_n

    def _recent_n(self, config: SAM2Config) -> int:
        if self.recent_n is not None:
            return self.recent_n
        return config.slm.recent_n if config.slm is not None else 1

    def select_recent(self, frame: int, bank: MemoryBank, *, reverse: bool, num_frames: int,
                      config: SAM2Config) -> MemoryContext | None:
        """The short-term context of ``frame`` (``None`` when none of its recent slices is stored)."""
        step = 1 if reverse else -1
        n_ptr = min(num_frames, config.max_obj_ptrs_in_encoder)
        spatial, pointers = [], []
        # d steps back gets SAM2's temporal slot num_maskmem - d (slot 0 when d == num_maskmem), oldest first.
        for d in range(min(self._recent_n(config), config.num_maskmem), 0, -1):
            t = frame + step * d
            entry = bank.recent.get(t, bank.cond.get(t))
            if entry is not None and entry.features is not None:
                spatial.append((config.num_maskmem - d, entry.features))
        for d in range(1, min(self._recent_n(config), n_ptr - 1) + 1):
            t = frame + step * d
            if t < 0 or t >= num_frames:
                break
            entry = bank.recent.get(t, bank.cond.get(t))
            if entry is not None:
                pointers.append((d, entry.obj_ptr))
        if not spatial and not pointers:
            return None
        return MemoryContext(spatial=spatial, pointers=pointers, ptr_tpos_max=max(n_ptr - 1, 1))

    def select(self, frame: int, bank: MemoryBank, *, reverse: bool, num_frames: int,
               config: SAM2Config) -> MemoryContext:
        ctx = super().select(frame, bank, reverse=reverse, num_frames=num_frames, config=config)
        ctx.recent = self.select_recent(frame, bank, reverse=reverse, num_frames=num_frames, config=config)
        return ctx

    def evict(self, frame: int, bank: MemoryBank, *, reverse: bool, config: SAM2Config) -> None:
        horizon = max(config.num_maskmem - 1, config.max_obj_ptrs_in_encoder - 1, self._recent_n(config))
        for t in [t for t in bank.recent if abs(frame - t) >= horizon or (t < frame if reverse else t > frame)]:
            del bank.recent[t]


class MemoryKind(str, Enum):
    """Which memory a session propagates with.

    ``SAM2``: SAM2's own memory (prompted slices, the last 6 slices, 16 object pointers); the
    default, and the right choice for SAM2 / MedSAM2 weights that were not trained with SLM.
    ``SLM``: SLM-SAM2's short-long memory (adds a branch over the most recent slice); made for
    one annotated slice propagated through a volume, worth it with SLM-trained weights (with
    other weights it predicts like SAM2, at ~1.5x the tracking cost).
    """

    SAM2 = "sam2"
    SLM = "slm"

    @classmethod
    def parse(cls, value: "MemoryKind | str") -> "MemoryKind":
        """``MemoryKind`` from itself or its name; a clear ``ValueError`` otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"memory must be one of {', '.join(k.value for k in cls)}, got {value!r}") from None


def make_policy(kind: "MemoryKind | str") -> MemoryPolicy:
    """The memory policy of a :class:`MemoryKind`."""
    return SLMMemoryPolicy() if MemoryKind.parse(kind) is MemoryKind.SLM else SAM2MemoryPolicy()
