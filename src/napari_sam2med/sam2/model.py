"""SAM2 / SAM2.1 as a stateless per-frame model.

:class:`SAM2Model` holds every parameter of the official checkpoints under the official
names, but keeps no video state: the caller (``engine/``) passes the memory that a frame
attends to explicitly (:class:`MemoryContext`). That makes the memory-selection policy a
separate, pluggable object and lets the engine bound what it stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .configs import SAM2Config
from .position_encoding import get_1d_sine_pe

__all__ = ["SAM2Model", "FrameFeatures", "PointInputs", "MemoryContext", "TrackOutput", "NO_OBJ_SCORE"]

#: Logit written where the object-score head says the object is absent.
NO_OBJ_SCORE = -1024.0


@dataclass
class FrameFeatures:
    """Image features of one frame, batch-expandable over objects.

    ``vision`` and ``vision_pos`` are the stride-16 map (B, C, H, W); ``high_res`` holds the
    stride-4 and stride-8 maps after the decoder's ``conv_s0`` / ``conv_s1``.
    """

    vision: torch.Tensor
    vision_pos: torch.Tensor
    high_res: tuple[torch.Tensor, torch.Tensor]

    def expand(self, batch: int) -> "FrameFeatures":
        """Return a view with batch size ``batch`` (the features must have batch 1)."""
        ex = lambda t: t.expand(batch, -1, -1, -1)  # noqa: E731
        return FrameFeatures(ex(self.vision), ex(self.vision_pos), (ex(self.high_res[0]), ex(self.high_res[1])))


@dataclass
class PointInputs:
    """Prompt points in model pixel units (x, y) and labels (1 pos, 0 neg, 2/3 box, -1 pad)."""

    coords: torch.Tensor  # (B, P, 2) float32
    labels: torch.Tensor  # (B, P) int32

    @property
    def count(self) -> int:
        return int(self.labels.shape[1])


@dataclass
class MemoryContext:
    """What one frame attends to.

    Parameters
    ----------
    spatial : list of (int, Tensor)
        ``(t_pos, maskmem_features)`` pairs; ``t_pos`` 0 for conditioning frames and
        1..num_maskmem-1 for recent frames (num_maskmem-1 is the previous frame).
    pointers : list of (int, Tensor)
        ``(temporal offset, obj_ptr)`` pairs, each pointer (B, C).
    ptr_tpos_max : int
        Normaliser of the pointer temporal offsets (``min(num_frames, max_ptrs) - 1``).
    recent : MemoryContext, optional
        SLM-SAM2's short-term memory (the most recent slices only), attended by the model's
        ``recent_memory_attention`` and fused with this (long) context; ``None`` for plain SAM2.
    """

    spatial: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    pointers: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    ptr_tpos_max: int = 15
    recent: "MemoryContext | None" = None


@dataclass
class TrackOutput:
    """Result of one tracking step for a batch of objects on one frame."""

    low_res_masks: torch.Tensor  # (B, 1, S/4, S/4) logits
    high_res_masks: torch.Tensor  # (B, 1, S, S) logits
    ious: torch.Tensor  # (B, M)
    obj_ptr: torch.Tensor  # (B, C)
    object_score_logits: torch.Tensor  # (B, 1)
    multimask_logits: torch.Tensor  # (B, M, S/4, S/4)
    maskmem_features: torch.Tensor | None = None  # (B, mem_dim, H, W)


class SAM2Model(nn.Module):
    """The SAM2 network: image encoder, prompt encoder, mask decoder and memory modules.

    Build it with :func:`napari_sam2med.sam2.build_model`; attribute names equal the official
    ``SAM2Base`` so that official checkpoints load with ``strict=True``.
    """

    def __init__(self, config: SAM2Config, *, image_encoder: nn.Module, memory_attention: nn.Module,
                 memory_encoder: nn.Module, sam_prompt_encoder: nn.Module, sam_mask_decoder: nn.Module,
                 obj_ptr_proj: nn.Module):
        super().__init__()
        self.config = config
        c, m = config.d_model, config.mem_dim
        self.image_encoder = image_encoder
        self.memory_attention = memory_attention
        self.memory_encoder = memory_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.obj_ptr_proj = obj_ptr_proj
        self.obj_ptr_tpos_proj = nn.Linear(c, m) if config.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        if config.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))
        else:
            self.no_obj_embed_spatial = None
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr):
            nn.init.trunc_normal_(p, std=0.02)
        if self.no_obj_embed_spatial is not None:
            nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)
        self._maskmem_pos: dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def encode_image(self, images: torch.Tensor) -> FrameFeatures:
        """Run the image encoder on normalised images (B, 3, S, S)."""
        out = self.image_encoder(images)
        fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
        s0 = self.sam_mask_decoder.conv_s0(fpn[0])
        s1 = self.sam_mask_decoder.conv_s1(fpn[1])
        return FrameFeatures(vision=fpn[-1], vision_pos=pos[-1], high_res=(s0, s1))

    # ------------------------------------------------------------- SAM heads
    def forward_sam_heads(self, pix_feat: torch.Tensor, high_res: tuple, points: PointInputs | None,
                          mask_logits: torch.Tensor | None, multimask: bool):
        """Prompt encoder + mask decoder on (memory-conditioned) features.

        Returns ``(multimask_logits, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits)``.
        """
        b = pix_feat.shape[0]
        if points is None:
            coords = pix_feat.new_zeros(b, 1, 2)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=pix_feat.device)
        else:
            coords, labels = points.coords, points.labels
        dense_mask = None
        if mask_logits is not None:
            size = self.sam_prompt_encoder.mask_input_size
            dense_mask = mask_logits
            if tuple(mask_logits.shape[-2:]) != tuple(size):
                dense_mask = F.interpolate(mask_logits.float(), size=size, mode="bilinear",
                                           align_corners=False, antialias=True)
        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=dense_mask)
        multi, ious, tokens, score = self.sam_mask_decoder(
            image_embeddings=pix_feat, image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask, repeat_image=False, high_res_features=list(high_res),
        )
        present = score > 0
        multi = torch.where(present[:, None, None], multi, NO_OBJ_SCORE).float()
        token = tokens[:, 0]
        if multimask:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(b, device=pix_feat.device)
            low = multi[rows, best].unsqueeze(1)
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        else:
            low = multi
        high = self._upsample(low)
        ptr = self._gate_pointer(self.obj_ptr_proj(token), present.float())
        return multi, ious, low, high, ptr, score

    def mask_as_output(self, feats: FrameFeatures, mask: torch.Tensor):
        """Turn a binary mask prompt (B, 1, S, S) directly into the output (as SAM2 does)."""
        m = mask.float()
        high = m * 20.0 - 10.0
        low = F.interpolate(high, size=(high.shape[-2] // 4, high.shape[-1] // 4), mode="bilinear",
                            align_corners=False, antialias=True)
        _, _, _, _, ptr, _ = self.forward_sam_heads(feats.vision, feats.high_res, None,
                                                    self.mask_downsample(m), multimask=False)
        present = torch.any(m.flatten(1) > 0, dim=1, keepdim=True).float()
        ptr = self._gate_pointer(ptr, present)  # gated again by the mask itself, as SAM2 does
        score = present * 20.0 - 10.0
        ious = m.new_ones(m.shape[0], 1)
        return low, ious, low, high, ptr, score

    def _gate_pointer(self, ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # fixed_no_obj_ptr: an absent object gets the learned no-object pointer.
        return present * ptr + (1 - present) * self.no_obj_ptr

    def _upsample(self, low: torch.Tensor) -> torch.Tensor:
        s = self.config.image_size
        return F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)

    # ---------------------------------------------------------------- memory
    def maskmem_pos(self, like: torch.Tensor) -> torch.Tensor:
        """Sine position encoding of memory features (constant across frames), cached."""
        key = (tuple(like.shape[-2:]), like.device, like.dtype)
        if key not in self._maskmem_pos:
            probe = like[:1].float()
            self._maskmem_pos[key] = self.memory_encoder.position_encoding(probe).to(like.dtype)
        return self._maskmem_pos[key]

    def condition_on_memory(self, feats: FrameFeatures, memory: MemoryContext | None) -> torch.Tensor:
        """Fuse the frame's stride-16 features with its memory; ``None`` means an initial frame.

        With a short-term context (``memory.recent``, SLM-SAM2) the long context goes through
        ``memory_attention``, the short one through ``recent_memory_attention``, and
        ``recent_memory_fuser`` fuses the two (see :mod:`.slm`).
        """
        if memory is None:
            return feats.vision + self.no_mem_embed.view(1, -1, 1, 1)
        long = self._attend(feats, memory, self.memory_attention)
        if memory.recent is None:
            return long
        short_attention = getattr(self, "recent_memory_attention", None)
        if short_attention is None:
            raise ValueError("a short-term (SLM) memory needs a model with SLM modules: load it with memory 'slm'")
        short = self._attend(feats, memory.recent, short_attention)
        return self.recent_memory_fuser(short, long)

    def _attend(self, feats: FrameFeatures, memory: MemoryContext, attention: nn.Module) -> torch.Tensor:
        """One memory attention over the spatial memories and pointers of ``memory``."""
        vision = feats.vision
        b, c, h, w = vision.shape
        tokens, pos = [], []
        cfg = self.config
        for t_pos, mem in memory.spatial:
            mem = mem.to(vision.device, vision.dtype)
            if mem.shape[0] != b:
                mem = mem.expand(b, -1, -1, -1)
            tokens.append(mem.flatten(2).permute(2, 0, 1))
            mpos = self.maskmem_pos(mem).expand(b, -1, -1, -1).flatten(2).permute(2, 0, 1)
            pos.append(mpos + self.maskmem_tpos_enc[cfg.num_maskmem - t_pos - 1])
        n_ptr_tokens = 0
        if memory.pointers:
            offsets, ptrs = zip(*memory.pointers)
            ptrs = torch.stack([p.to(vision.device, vision.dtype).expand(b, -1) for p in ptrs], dim=0)
            mdim = cfg.mem_dim
            if cfg.add_tpos_enc_to_obj_ptrs:
                t = torch.tensor(offsets, device=vision.device, dtype=torch.float32)
                dim = c if cfg.proj_tpos_enc_in_obj_ptrs else mdim
                ptr_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(t / memory.ptr_tpos_max, dim=dim))
                ptr_pos = ptr_pos.unsqueeze(1).expand(-1, b, mdim)
            else:
                ptr_pos = ptrs.new_zeros(len(offsets), b, mdim)
            if mdim < c:  # split each C-dim pointer into C/mem_dim tokens
                ptrs = ptrs.reshape(-1, b, c // mdim, mdim).permute(0, 2, 1, 3).flatten(0, 1)
                ptr_pos = ptr_pos.repeat_interleave(c // mdim, dim=0)
            tokens.append(ptrs)
            pos.append(ptr_pos.to(ptrs.dtype))
            n_ptr_tokens = ptrs.shape[0]
        curr = vision.flatten(2).permute(2, 0, 1)
        curr_pos = feats.vision_pos.flatten(2).permute(2, 0, 1)
        if not tokens:
            raise ValueError("empty memory context: give None for a frame without memory")
        fused = attention(curr=[curr], curr_pos=[curr_pos], memory=torch.cat(tokens, 0),
                          memory_pos=torch.cat(pos, 0), num_obj_ptr_tokens=n_ptr_tokens)
        return fused.permute(1, 2, 0).reshape(b, c, h, w)

    def encode_memory(self, feats: FrameFeatures, high_res_masks: torch.Tensor,
                      object_score_logits: torch.Tensor, from_points: bool) -> torch.Tensor:
        """Encode a frame's prediction into memory features (B, mem_dim, H, W)."""
        cfg = self.config
        if cfg.binarize_mask_from_pts_for_mem_enc and from_points:
            mask = (high_res_masks > 0).float()
        else:
            mask = torch.sigmoid(high_res_masks)
        mask = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        out = self.memory_encoder(feats.vision, mask, skip_mask_sigmoid=True)
        mem = out["vision_features"]
        if self.no_obj_embed_spatial is not None:
            absent = (object_score_logits <= 0).float()[..., None, None]
            mem = mem + absent * self.no_obj_embed_spatial[..., None, None]
        return mem

    # ------------------------------------------------------------ one step
    def use_multimask(self, points: PointInputs | None) -> bool:
        """SAM2's rule: several candidates for 0 or 1 click (on any frame, tracking included)."""
        n = 0 if points is None else points.count
        return self.config.multimask_min_pt_num <= n <= self.config.multimask_max_pt_num

    def track_step(self, feats: FrameFeatures, *, memory: MemoryContext | None,
                   points: PointInputs | None = None, mask: torch.Tensor | None = None,
                   prev_mask_logits: torch.Tensor | None = None, run_memory_encoder: bool = True) -> TrackOutput:
        """Predict one frame for a batch of objects.

        Parameters
        ----------
        feats : FrameFeatures
            The frame's features, expanded to the object batch.
        memory : MemoryContext or None
            Memory to attend to; ``None`` for an initial conditioning frame.
        points, mask : optional
            Prompts (``mask`` is a binary (B, 1, S, S) prompt returned as the output itself).
        prev_mask_logits : Tensor, optional
            Low-res logits of an earlier prediction on this frame, refined by ``points``.
        run_memory_encoder : bool
            Also encode the prediction into memory features.
        """
        if mask is not None:
            multi, ious, low, high, ptr, score = self.mask_as_output(feats, mask)
        else:
            pix = self.condition_on_memory(feats, memory)
            multimask = self.use_multimask(points)
            multi, ious, low, high, ptr, score = self.forward_sam_heads(
                pix, feats.high_res, points, prev_mask_logits, multimask)
        mem = None
        if run_memory_encoder:
            mem = self.encode_memory(feats, high, score, from_points=points is not None)
        return TrackOutput(low_res_masks=low, high_res_masks=high, ious=ious, obj_ptr=ptr,
                           object_score_logits=score, multimask_logits=multi, maskmem_features=mem)
