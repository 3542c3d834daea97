"""SAM2Flow: ROI-prompted optical flow with a dual motion/context memory.

Our own compact re-implementation of the idea (no public code or weights exist):

* a CNN matching encoder and a SAM2 Hiera context encoder with adapters, both at 1/4
  resolution;
* all-pairs correlation pyramid + separable ConvGRU refinement (RAFT style) with
  convex 4x upsampling;
* point prompts -> sine-encoded sparse tokens -> per-ROI mask decoder;
* a FIFO dual memory (motion + context entries of the last pairs) read by per-pixel
  cross-attention; it feeds the GRU, warm-starts the flow and carries the previous ROI
  estimate that gates the next pair, so a video streams in constant memory.

Frames are gray ``(B, 1, H, W)`` in [0, 1]; sides must be multiples of
:attr:`SAM2Flow.stride` (use :func:`pad_to_stride`). Flows are ``(B, 2, H, W)``
``(d_row, d_col)`` with ``frame_{t+1}(p + flow) ~= frame_t(p)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .correlation import build_correlation
from .encoders import HieraContextEncoder, MatchingEncoder
from .memory import DualMemoryReader, FlowMemoryBank
from .roi_decoder import PointPromptEncoder, RoiDecoder
from .update import UpdateBlock, convex_upsample

__all__ = ["SAM2FlowConfig", "SAM2Flow", "FrameFeatures", "PairOutput", "pad_to_stride"]


@dataclass
class SAM2FlowConfig:
    """Architecture hyper-parameters (stored in checkpoints as a plain dict)."""

    match_dim: int = 96
    context_dim: int = 128
    hidden_dim: int = 64
    memory_dim: int = 64
    memory_slots: int = 3
    roi_dim: int = 64
    corr_levels: int = 3
    corr_radius: int = 3
    # Refinement steps at inference. The GRU is trained unrolled 4 times and does not extrapolate:
    # on the validation set 4 / 6 / 10 / 16 steps gave EPE 2.26 / 2.36 / 2.58 / 3.03 px.
    iters: int = 4
    max_all_pairs: int = 4096
    hiera_embed_dim: int = 32
    hiera_stages: tuple = (1, 1, 2, 1)
    hiera_window_spec: tuple = (8, 4, 4, 4)
    hiera_global_blocks: tuple = (3,)
    # How the previous pair feeds the next (see :meth:`SAM2Flow.pair`). ``"gated"``: the warm
    # start is squashed to the correlation reach and scaled by a learned per-pixel gate, and the
    # flow written into memory is squashed, so every feedback path is bounded. ``"legacy"``: the
    # v1 (run 1-4) behaviour, raw previous flow as warm start; it diverges on long videos
    # (benchmarks/RESULTS.md). Checkpoints without the key are legacy ones.
    feedback: str = "gated"

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SAM2FlowConfig":
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in cls.__dataclass_fields__}
        known.setdefault("feedback", "legacy")  # written before the gated feedback existed
        return cls(**known)

    @property
    def reach(self) -> float:
        """Largest displacement (1/4-resolution px) the correlation look-up can see."""
        return float(self.corr_radius * 2 ** (self.corr_levels - 1))


@dataclass
class FrameFeatures:
    """Per-frame encodings at 1/4 resolution."""

    match: torch.Tensor  # (B, match_dim, h, w)
    context: torch.Tensor  # (B, context_dim, h, w)


@dataclass
class PairOutput:
    """Result of one frame pair."""

    flows: list  # per refinement iteration, (B, 2, H, W) full resolution
    roi_logits: torch.Tensor  # (B, R, H, W)
    flow_low: torch.Tensor = field(repr=False, default=None)  # (B, 2, h, w) in 1/4-res px


def pad_to_stride(frames: torch.Tensor, stride: int = 32) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad (…, H, W) at the bottom/right to multiples of ``stride``; return original size."""
    h, w = frames.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        shape = frames.shape
        flat = frames.reshape(-1, 1, h, w)
        flat = F.pad(flat, (0, pw, 0, ph), mode="replicate")
        frames = flat.reshape(*shape[:-2], h + ph, w + pw)
    return frames, (h, w)


class SAM2Flow(nn.Module):
    """ROI-prompted streaming optical-flow network (see module docstring)."""

    stride = 32
    scale = 4

    def __init__(self, cfg: Optional[SAM2FlowConfig] = None):
        super().__init__()
        self.cfg = cfg = cfg or SAM2FlowConfig()
        self.match_encoder = MatchingEncoder(cfg.match_dim)
        self.context_encoder = HieraContextEncoder(
            out_dim=cfg.context_dim,
            embed_dim=cfg.hiera_embed_dim,
            stages=cfg.hiera_stages,
            window_spec=cfg.hiera_window_spec,
            global_att_blocks=cfg.hiera_global_blocks,
        )
        self.memory = DualMemoryReader(cfg.context_dim, cfg.hidden_dim, cfg.memory_dim, capacity=cfg.memory_slots)
        mixed = cfg.context_dim + cfg.memory_dim
        self.hidden_init = nn.Conv2d(mixed, cfg.hidden_dim, 3, padding=1)
        self.context_in = nn.Conv2d(mixed + 1, cfg.context_dim, 3, padding=1)
        corr_channels = cfg.corr_levels * (2 * cfg.corr_radius + 1) ** 2
        self.update = UpdateBlock(corr_channels, cfg.hidden_dim, cfg.context_dim, self.scale)
        self.prompt_encoder = PointPromptEncoder(cfg.roi_dim)
        self.roi_decoder = RoiDecoder(mixed + cfg.hidden_dim, cfg.roi_dim)
        if cfg.feedback not in ("gated", "legacy"):
            raise ValueError(f"feedback must be 'gated' or 'legacy', got {cfg.feedback!r}")
        self.warm_gate = None
        if cfg.feedback == "gated":
            # Per-pixel trust in the previous pair's flow, from the context, the memory read-out and
            # the (squashed) previous flow itself. Starts half open; training can close it.
            self.warm_gate = nn.Conv2d(mixed + 2, 1, 3, padding=1)
            nn.init.zeros_(self.warm_gate.weight)
            nn.init.zeros_(self.warm_gate.bias)

    def new_memory(self) -> FlowMemoryBank:
        """An empty memory bank with this model's capacity."""
        return FlowMemoryBank(capacity=self.cfg.memory_slots)

    def encode(self, frames: torch.Tensor) -> FrameFeatures:
        """Encode frames (B, 1, H, W) whose sides are multiples of :attr:`stride`."""
        if frames.ndim != 4 or frames.shape[1] != 1:
            raise ValueError(f"frames must be (B, 1, H, W), got {tuple(frames.shape)}")
        if frames.shape[-2] % self.stride or frames.shape[-1] % self.stride:
            raise ValueError(f"frame sides must be multiples of {self.stride}, got {tuple(frames.shape[-2:])}")
        return FrameFeatures(self.match_encoder(frames), self.context_encoder(frames))

    def encode_prompts(self, points: torch.Tensor, labels: torch.Tensor, size: tuple[int, int]):
        """Prompt tokens from (B, R, P, 2) points and (B, R, P) labels (-1 = padding)."""
        return self.prompt_encoder(points, labels, size)

    def pair(
        self,
        prev: FrameFeatures,
        cur: FrameFeatures,
        bank: FlowMemoryBank,
        prompts=None,
        iters: Optional[int] = None,
    ) -> PairOutput:
        """Flow from ``prev`` to ``cur`` and ROI logits; pushes this pair into ``bank``."""
        iters = iters or self.cfg.iters
        ctx = prev.context
        b, _, h, w = ctx.shape
        read = self.memory.read(ctx, bank)
        mixed = torch.cat([ctx, read], dim=1)
        hidden = torch.tanh(self.hidden_init(mixed))
        gate = bank.roi_prob if bank.roi_prob is not None else ctx.new_zeros(b, 1, h, w)
        context = F.relu(self.context_in(torch.cat([mixed, gate.to(ctx.dtype)], dim=1)))

        corr_fn = build_correlation(
            prev.match.float(), cur.match.float(), self.cfg.corr_levels, self.cfg.corr_radius, self.cfg.max_all_pairs
        )
        rows, cols = torch.meshgrid(
            torch.arange(h, device=ctx.device, dtype=torch.float32),
            torch.arange(w, device=ctx.device, dtype=torch.float32),
            indexing="ij",
        )
        coords0 = torch.stack([rows, cols])[None].expand(b, -1, -1, -1)
        init = self._warm_start(bank, mixed, coords0)
        flow, flows = init, []
        for _ in range(iters):
            # RAFT-style: no gradient through the look-up chain, but the gated warm start keeps
            # its gradient in every iteration so the gate learns when to trust the last pair.
            refined = (flow - init).detach()
            flow = init + refined if self.warm_gate is not None else flow.detach()
            corr = corr_fn(coords0 + flow.detach()).to(context.dtype)
            hidden, delta, mask = self.update(hidden, context, corr, flow.detach().to(context.dtype))
            flow = flow + delta.float()
            flows.append(convex_upsample(flow, mask.float(), self.scale))

        roi_logits = self._decode_rois(torch.cat([mixed, hidden], dim=1), prompts)
        if roi_logits.shape[1]:
            roi_prob = torch.sigmoid(roi_logits.detach()).amax(dim=1, keepdim=True)
        else:
            roi_prob = ctx.new_zeros(b, 1, h, w)
        squash = self.warm_gate is not None
        motion, context_entry = self.memory.write(hidden, flow.to(hidden.dtype), ctx, squash=squash)
        bank.push(motion, context_entry, flow.detach(), roi_prob)
        if roi_logits.shape[1]:
            roi_full = F.interpolate(roi_logits.float(), scale_factor=self.scale, mode="bilinear", align_corners=False)
        else:
            roi_full = roi_logits.new_zeros(b, 0, h * self.scale, w * self.scale, dtype=torch.float32)
        return PairOutput(flows=flows, roi_logits=roi_full, flow_low=flow)

    def _warm_start(self, bank: FlowMemoryBank, mixed: torch.Tensor, coords0: torch.Tensor) -> torch.Tensor:
        """Initial low-resolution flow of a pair from the previous pair's flow."""
        if bank.last_flow is None:
            return torch.zeros_like(coords0)
        last = bank.last_flow.detach().float()
        if self.warm_gate is None:  # legacy: unbounded feedback
            return last
        reach = self.cfg.reach
        squashed = reach * torch.tanh(last / reach)  # never beyond the look-up's reach
        gate = torch.sigmoid(self.warm_gate(torch.cat([mixed, squashed.to(mixed.dtype) / reach], dim=1)))
        return gate.float() * squashed

    def _decode_rois(self, feats: torch.Tensor, prompts) -> torch.Tensor:
        b, _, h, w = feats.shape
        if prompts is None or prompts[0].shape[1] == 0:
            return feats.new_zeros(b, 0, h, w)
        tokens, valid = prompts
        return self.roi_decoder(feats, tokens.to(feats.dtype), valid)

    def forward(
        self, frames: torch.Tensor, points=None, labels=None, iters: Optional[int] = None,
        bank: Optional[FlowMemoryBank] = None,
    ) -> list[PairOutput]:
        """Run a clip (B, T, 1, H, W) through the streaming model; one output per pair.

        ``points`` (B, R, P, 2) and ``labels`` (B, R, P) are optional ROI prompts. ``bank``
        continues a stream (truncated back-propagation through long videos); default: empty.
        """
        if frames.ndim != 5 or frames.shape[2] != 1 or frames.shape[1] < 2:
            raise ValueError(f"clip must be (B, T>=2, 1, H, W), got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        feats = self.encode(frames.flatten(0, 1))
        per_frame = [
            FrameFeatures(feats.match.view(b, t, *feats.match.shape[1:])[:, i],
                          feats.context.view(b, t, *feats.context.shape[1:])[:, i])
            for i in range(t)
        ]
        prompts = None
        if points is not None:
            prompts = self.encode_prompts(points, labels, frames.shape[-2:])
        bank = self.new_memory() if bank is None else bank
        return [self.pair(per_frame[i], per_frame[i + 1], bank, prompts, iters) for i in range(t - 1)]
