"""Dual motion / context memory of SAM2Flow.

A short FIFO bank keeps, for the last few frame pairs, a motion entry (final GRU
state + flow, encoded) and a context entry (the frame's context features). The
current frame reads the bank with multi-head cross-attention over the stored slots
at every pixel (the field of view is static, so a pixel's own history is what
matters; a 3x3 convolution in the projections adds neighbourhood context). The bank
has a fixed number of slots, so arbitrarily long videos stream in constant memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FlowMemoryBank", "DualMemoryReader"]


@dataclass
class FlowMemoryBank:
    """FIFO of per-pair memory entries (newest last).

    Attributes
    ----------
    capacity : int
        Maximum number of stored pairs.
    motion, context : list of torch.Tensor
        (B, C, h, w) entries.
    last_flow : torch.Tensor or None
        Low-resolution flow of the newest pair (warm start of the next one).
    roi_prob : torch.Tensor or None
        ROI union probability at low resolution from the newest pair (gates the next).
    """

    capacity: int = 3
    motion: list = field(default_factory=list)
    context: list = field(default_factory=list)
    last_flow: Optional[torch.Tensor] = None
    roi_prob: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.motion)

    def push(self, motion: torch.Tensor, context: torch.Tensor, flow: torch.Tensor, roi_prob) -> None:
        """Append one pair's entries, dropping the oldest beyond ``capacity``."""
        self.motion.append(motion)
        self.context.append(context)
        del self.motion[: -self.capacity], self.context[: -self.capacity]
        self.last_flow, self.roi_prob = flow, roi_prob

    def detach(self) -> None:
        """Cut the autograd history of every entry (between truncated back-propagation windows)."""
        self.motion = [m.detach() for m in self.motion]
        self.context = [c.detach() for c in self.context]
        self.last_flow = None if self.last_flow is None else self.last_flow.detach()
        self.roi_prob = None if self.roi_prob is None else self.roi_prob.detach()


class DualMemoryReader(nn.Module):
    """Encode memory entries and read them with per-pixel multi-head cross-attention.

    Parameters
    ----------
    context_dim : int
        Channels of the context features (queries and context entries).
    hidden_dim : int
        Channels of the GRU state written into motion entries.
    dim : int
        Channels of memory entries and of the read-out.
    heads : int
        Attention heads.
    capacity : int
        Slots of the bank (one learned age embedding per slot).
    """

    def __init__(self, context_dim: int, hidden_dim: int, dim: int = 64, heads: int = 4, capacity: int = 3):
        super().__init__()
        self.dim, self.heads, self.capacity = dim, heads, capacity
        self.encode_motion = nn.Sequential(
            nn.Conv2d(hidden_dim + 2, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 1)
        )
        self.encode_context = nn.Conv2d(context_dim, dim, 1)
        self.query = nn.Conv2d(context_dim, dim, 3, padding=1)
        self.key = nn.Conv2d(dim, dim, 3, padding=1)
        self.value_motion = nn.Conv2d(dim, dim, 1)
        self.value_context = nn.Conv2d(dim, dim, 1)
        self.age = nn.Parameter(torch.zeros(capacity, dim, 1, 1))
        self.out = nn.Conv2d(2 * dim, dim, 1)
        self.no_memory = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def write(self, hidden: torch.Tensor, flow: torch.Tensor, context: torch.Tensor, squash: bool = False):
        """Motion and context entries of one pair (flow in low-resolution px).

        ``squash`` bounds the flow channels with ``tanh`` (same as ``flow / 8`` for small flows),
        so a wrong flow cannot grow the memory without limit.
        """
        flow = torch.tanh(flow / 8.0) if squash else flow / 8.0
        motion = self.encode_motion(torch.cat([hidden, flow], dim=1))
        return motion, self.encode_context(context)

    def read(self, context: torch.Tensor, bank: FlowMemoryBank) -> torch.Tensor:
        """Memory read-out (B, dim, h, w) for the current context features."""
        b, _, h, w = context.shape
        if len(bank) == 0:
            return self.no_memory.expand(b, -1, h, w)
        n = len(bank)
        ages = self.age[self.capacity - n :]  # newest entry gets the last age slot
        ctx = torch.stack(bank.context, dim=1) + ages[None]  # (B, S, C, h, w)
        mot = torch.stack(bank.motion, dim=1)
        flat = lambda t: t.flatten(0, 1)  # noqa: E731
        unflat = lambda t: t.view(b, n, self.heads, self.dim // self.heads, h, w)  # noqa: E731
        keys = unflat(self.key(flat(ctx)))
        v_mot = unflat(self.value_motion(flat(mot + ages[None])))
        v_ctx = unflat(self.value_context(flat(ctx)))
        q = self.query(context).view(b, self.heads, self.dim // self.heads, h, w)
        logits = torch.einsum("bkdhw,bskdhw->bskhw", q, keys) / (self.dim // self.heads) ** 0.5
        attn = F.softmax(logits, dim=1).unsqueeze(3)  # (B, S, heads, 1, h, w)
        read_mot = (attn * v_mot).sum(1).reshape(b, self.dim, h, w)
        read_ctx = (attn * v_ctx).sum(1).reshape(b, self.dim, h, w)
        return self.out(torch.cat([read_mot, read_ctx], dim=1))
