"""Hiera trunk of the SAM2 image encoder (hierarchical windowed vision transformer).

Module attribute names follow the official SAM2 ``Hiera`` so that official
state dicts (``image_encoder.trunk.*``) load strictly.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .token_maps import max_pool_hw, pad_with_bias, window_partition, window_unpartition

__all__ = ["Hiera", "window_partition", "window_unpartition"]


class DropPath(nn.Module):
    """Stochastic depth on the residual branch; identity in eval mode or at rate 0."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class PatchEmbed(nn.Module):
    """Overlapping 7x7 / stride-4 convolutional patch embedding, output channels-last."""

    def __init__(self, in_chans: int = 3, embed_dim: int = 96):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last and contiguous: the blocks work on the last axis, and the residual sums keep
        # the layout of their first operand, so an NCHW-strided view here would slow every block.
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class FeedForward(nn.Module):
    """Two-layer GELU MLP stored as ``layers.0`` / ``layers.1`` (official key layout)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, hidden_dim), nn.Linear(hidden_dim, dim)])
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](self.act(self.layers[0](x)))


class PooledAttention(nn.Module):
    """Multi-head self-attention whose queries can be max-pooled (stage transitions).

    Input (B, H, W, dim) -> output (B, H', W', dim_out) with (H', W') the pooled
    query grid.
    """

    def __init__(
        self, dim: int, dim_out: int, num_heads: int, q_stride: Optional[tuple[int, int]] = None
    ):
        super().__init__()
        self.dim, self.dim_out, self.num_heads = dim, dim_out, num_heads
        self.q_stride = tuple(q_stride) if q_stride else None
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention on projected tokens (B, H, W, 3 * dim_out), before the output projection."""
        b = qkv.shape[0]
        heads = self.num_heads
        q, k, v = qkv.chunk(3, dim=-1)
        if self.q_stride:
            q = max_pool_hw(q, self.q_stride)
        hq, wq = q.shape[1], q.shape[2]

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, -1, heads, self.dim_out // heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split_heads(q), split_heads(k), split_heads(v))
        return out.transpose(1, 2).reshape(b, hq, wq, self.dim_out)


class HieraBlock(nn.Module):
    """One Hiera transformer block: (windowed) pooled attention + MLP, pre-norm.

    Parameters
    ----------
    dim, dim_out : int
        Input / output channels; when they differ a linear ``proj`` maps the shortcut.
    num_heads : int
        Attention heads.
    mlp_ratio : float
        MLP hidden size as a multiple of ``dim_out``.
    drop_path : float
        Stochastic depth rate.
    q_stride : tuple of int or None
        Query pooling stride (first block of a new stage), or None.
    window_size : int
        Attention window side; 0 means global attention.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        q_stride: Optional[tuple[int, int]] = None,
        window_size: int = 0,
    ):
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = int(window_size)
        self.q_stride = tuple(q_stride) if q_stride else None
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = PooledAttention(dim, dim_out, num_heads, q_stride=self.q_stride)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = FeedForward(dim_out, int(dim_out * mlp_ratio))
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(x)
        shortcut = self.proj(normed) if self.dim != self.dim_out else x
        if self.q_stride:
            shortcut = max_pool_hw(shortcut, self.q_stride)
        out_hw = (shortcut.shape[1], shortcut.shape[2])

        if self.window_size > 0:
            # Projections are per token, so they commute with windowing: project the real tokens,
            # pad, attend per window, stitch, crop, then apply the output projection.
            ws = self.window_size
            if normed.shape[1] % ws or normed.shape[2] % ws:
                qkv = pad_with_bias(self.attn.qkv(normed), ws, self.attn.qkv.bias)
                windows, grid = window_partition(qkv, ws)
            else:  # no padding: partition the narrower normalised tokens, then project
                windows, grid = window_partition(normed, ws)
                windows = self.attn.qkv(windows)
            attended = self.attn.proj(window_unpartition(self.attn.attend(windows), grid, out_hw))
        else:
            attended = self.attn(normed)

        x = shortcut + self.drop_path(attended)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Hiera(nn.Module):
    """Hiera trunk: patch embedding, position embedding and four stages of blocks.

    Arguments mirror the official SAM2 ``Hiera`` (same defaults, except that no
    ``weights_path`` loading is done here).

    Parameters
    ----------
    embed_dim : int
        Channels of the first stage.
    num_heads : int
        Attention heads of the first stage.
    drop_path_rate : float
        Maximum stochastic depth rate (linearly increasing over blocks).
    q_pool : int
        Number of stage transitions that pool queries (downsample).
    q_stride : tuple of int
        Query pooling stride at those transitions.
    stages : sequence of int
        Blocks per stage.
    dim_mul, head_mul : float
        Channel / head multiplier at each stage transition.
    window_pos_embed_bkg_spatial_size : tuple of int
        Grid size of the background position embedding (interpolated at runtime).
    window_spec : sequence of int
        Attention window size per stage.
    global_att_blocks : sequence of int
        Indices of blocks with global attention.
    return_interm_layers : bool
        Return the output of every stage (True) or only of the last one.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        drop_path_rate: float = 0.0,
        q_pool: int = 3,
        q_stride: tuple[int, int] = (2, 2),
        stages: Sequence[int] = (2, 3, 16, 3),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14),
        window_spec: Sequence[int] = (8, 4, 14, 7),
        global_att_blocks: Optional[Sequence[int]] = (12, 16, 20),
        return_interm_layers: bool = True,
    ):
        super().__init__()
        stages, window_spec = list(stages), list(window_spec)
        if len(stages) != len(window_spec):
            raise ValueError(
                f"stages ({len(stages)}) and window_spec ({len(window_spec)}) differ in length"
            )
        if not 0 <= q_pool <= len(stages) - 1:
            raise ValueError(f"q_pool must be in [0, {len(stages) - 1}], got {q_pool}")
        self.window_spec = window_spec
        self.q_stride = tuple(q_stride)
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        self.q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]
        self.return_interm_layers = return_interm_layers
        self.global_att_blocks = list(global_att_blocks) if global_att_blocks is not None else []
        self.window_pos_embed_bkg_spatial_size = tuple(window_pos_embed_bkg_spatial_size)
        # Total downsampling of the last stage relative to the input image.
        self.total_stride = 4 * self.q_stride[0] ** len(self.q_pool_blocks)

        self.patch_embed = PatchEmbed(embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, embed_dim, *self.window_pos_embed_bkg_spatial_size)
        )
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, embed_dim, window_spec[0], window_spec[0])
        )

        depth = sum(stages)
        drop_rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # no tensor: meta-safe
        self.blocks = nn.ModuleList()
        stage = 0
        dim = embed_dim
        for i in range(depth):
            # The first block of a stage still uses the previous stage's window size.
            window = 0 if i in self.global_att_blocks else window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * dim_mul)
                num_heads = int(num_heads * head_mul)
                stage += 1
            self.blocks.append(
                HieraBlock(
                    dim,
                    dim_out,
                    num_heads,
                    drop_path=drop_rates[i],
                    q_stride=self.q_stride if i in self.q_pool_blocks else None,
                    window_size=window,
                )
            )
            dim = dim_out

        ends = self.stage_ends[::-1] if return_interm_layers else self.stage_ends[-1:]
        self.channel_list = [self.blocks[i].dim_out for i in ends]
        self._pos_cache: Optional[tuple] = None  # (key, embedding), see _position_embedding

    def _position_embedding(self, h: int, w: int) -> torch.Tensor:
        """Background embedding resized to (h, w) plus the tiled window embedding, (1, h, w, C).

        Without autograd the result is cached (bicubic resizing costs ~4 ms per forward at
        256 px on CPU); the key includes the parameters' storage and version counters, so
        loading new weights or editing them in place invalidates it.
        """
        if torch.is_grad_enabled() and (self.pos_embed.requires_grad or self.pos_embed_window.requires_grad):
            return self._compute_position_embedding(h, w)
        key = (h, w, self.pos_embed.data_ptr(), self.pos_embed._version,
               self.pos_embed_window.data_ptr(), self.pos_embed_window._version,
               torch.is_inference_mode_enabled())
        cached = self._pos_cache
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, self._compute_position_embedding(h, w))
            self._pos_cache = cached
        return cached[1]

    def _compute_position_embedding(self, h: int, w: int) -> torch.Tensor:
        background = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        reps_h = math.ceil(h / win.shape[-2])
        reps_w = math.ceil(w / win.shape[-1])
        tiled = win.tile(1, 1, reps_h, reps_w)[:, :, :h, :w]
        return (background + tiled).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the trunk.

        Parameters
        ----------
        x : torch.Tensor
            Images (B, 3, H, W).

        Returns
        -------
        list of torch.Tensor
            Stage outputs (B, C_i, H_i, W_i) from highest to lowest resolution (only
            the last stage when ``return_interm_layers`` is False).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Hiera expects images of shape (B, 3, H, W), got {tuple(x.shape)}")
        x = self.patch_embed(x)
        x = x + self._position_embedding(x.shape[1], x.shape[2])
        last = self.stage_ends[-1]
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == last or (self.return_interm_layers and i in self.stage_ends):
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
