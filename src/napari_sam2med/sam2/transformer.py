"""Attention layers and the two-way transformer of the SAM mask decoder."""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP
from .position_encoding import apply_axial_rope, compute_axial_rope

__all__ = ["Attention", "RoPEAttention", "TwoWayAttentionBlock", "TwoWayTransformer"]


class Attention(nn.Module):
    """Multi-head attention whose internal width may be reduced by ``downsample_rate``.

    Parameters
    ----------
    embedding_dim : int
        Channel size of queries and of the output.
    num_heads : int
        Number of heads; must divide ``embedding_dim // downsample_rate``.
    downsample_rate : int
        Factor by which the projected (internal) width is smaller than ``embedding_dim``.
    dropout : float
        Attention dropout, used only in training mode.
    kv_in_dim : int, optional
        Channel size of keys and values (default ``embedding_dim``).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        dropout: float = 0.0,
        kv_in_dim: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(
                f"num_heads ({num_heads}) must divide the internal width ({self.internal_dim})"
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout_p = dropout

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, heads, N, C / heads)."""
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    @staticmethod
    def _merge_heads(x: Tensor) -> Tensor:
        """(B, heads, N, c) -> (B, N, heads * c)."""
        b, h, n, c = x.shape
        return x.transpose(1, 2).reshape(b, n, h * c)

    def _project(self, q: Tensor, k: Tensor, v: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return (
            self._split_heads(self.q_proj(q)),
            self._split_heads(self.k_proj(k)),
            self._split_heads(self.v_proj(v)),
        )

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out_proj(self._merge_heads(out))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attend queries ``(B, Nq, C)`` to keys/values ``(B, Nk, C_kv)``."""
        return self._attend(*self._project(q, k, v))


class RoPEAttention(Attention):
    """Attention with 2D axial rotary position encoding on queries and keys.

    Queries are the tokens of a row-major feature grid. The rotary table is built for
    ``feat_sizes`` and rebuilt (and cached) whenever the query count differs, so any
    feature-map size works; non-square grids need ``feat_hw`` in :meth:`forward`.

    Parameters
    ----------
    *args, **kwargs
        Passed to :class:`Attention`.
    rope_theta : float
        Base of the rotary frequencies.
    rope_k_repeat : bool
        Keys are several stacked copies of the query grid (memory frames); tile the
        rotary table over them.
    feat_sizes : (int, int)
        Default grid as ``(width, height)``.
    """

    def __init__(
        self,
        *args,
        rope_theta: float = 10000.0,
        rope_k_repeat: bool = False,
        feat_sizes: Tuple[int, int] = (64, 64),
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self.feat_sizes = (int(feat_sizes[0]), int(feat_sizes[1]))
        # Plain attribute, not a buffer: it is not in checkpoints and must stay fp32.
        self._rope_tables: Dict[Tuple[int, int, str], Tuple[Tensor, Tensor]] = {}

    def _rope_table(self, width: int, height: int, device) -> Tuple[Tensor, Tensor]:
        key = (width, height, str(device))
        table = self._rope_tables.get(key)
        if table is None:
            head_dim = self.internal_dim // self.num_heads
            table = compute_axial_rope(head_dim, width, height, self.rope_theta, device=device)
            self._rope_tables[key] = table
        return table

    def _grid_for(self, n_tokens: int, feat_hw: Optional[Tuple[int, int]]) -> Tuple[int, int]:
        """Return ``(width, height)`` of the query grid holding ``n_tokens`` tokens."""
        if feat_hw is not None:
            h, w = int(feat_hw[0]), int(feat_hw[1])
        elif self.feat_sizes[0] * self.feat_sizes[1] == n_tokens:
            w, h = self.feat_sizes
        else:
            side = math.isqrt(n_tokens)
            h = w = side
        if h * w != n_tokens:
            raise ValueError(
                f"cannot lay {n_tokens} query tokens on a grid; pass feat_hw=(H, W)"
            )
        return w, h

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        num_k_exclude_rope: int = 0,
        feat_hw: Optional[Tuple[int, int]] = None,
    ) -> Tensor:
        """Attend with RoPE; the last ``num_k_exclude_rope`` keys are left unrotated.

        Parameters
        ----------
        q : Tensor
            Queries ``(B, H*W, C)`` of a row-major grid.
        k, v : Tensor
            Keys and values ``(B, Nk, C_kv)``.
        num_k_exclude_rope : int
            Number of trailing keys (e.g. object pointers) that get no rotation.
        feat_hw : (int, int), optional
            Grid size of the queries when it is not square.
        """
        q, k, v = self._project(q, k, v)
        if q.shape[-2] != k.shape[-2] and not self.rope_k_repeat:
            raise ValueError("keys and queries differ in length but rope_k_repeat is False")
        width, height = self._grid_for(q.shape[-2], feat_hw)
        table = self._rope_table(width, height, q.device)
        n_rot = k.shape[-2] - num_k_exclude_rope
        q, k_rot = apply_axial_rope(q, k[:, :, :n_rot], table, repeat_freqs_k=self.rope_k_repeat)
        if num_k_exclude_rope > 0:
            k = torch.cat([k_rot, k[:, :, n_rot:]], dim=2)
        else:
            k = k_rot
        return self._attend(q, k, v)


class TwoWayAttentionBlock(nn.Module):
    """One block of the two-way transformer: tokens <-> image cross attention.

    Steps: token self-attention, token-to-image attention, token MLP, image-to-token
    attention, each followed by a residual add and LayerNorm.

    Parameters
    ----------
    embedding_dim, num_heads : int
        Width and heads of every attention.
    mlp_dim : int
        Hidden width of the token MLP.
    activation : type of nn.Module
        MLP activation.
    attention_downsample_rate : int
        Internal width reduction of the two cross attentions.
    skip_first_layer_pe : bool
        Do not add the token positional encoding in the self-attention (first block).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Update sparse ``queries`` (B, Nt, C) and dense ``keys`` (B, HW, C)."""
        if self.skip_first_layer_pe:
            # The first block replaces (not adds to) the tokens with their self-attention.
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Transformer that lets prompt tokens and image embeddings attend to each other.

    Parameters
    ----------
    depth : int
        Number of :class:`TwoWayAttentionBlock`.
    embedding_dim, num_heads, mlp_dim : int
        Width, heads and MLP hidden width.
    activation : type of nn.Module
        MLP activation.
    attention_downsample_rate : int
        Internal width reduction of the cross attentions.
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Run the transformer.

        Parameters
        ----------
        image_embedding, image_pe : Tensor
            Image features and their positional encoding, ``(B, C, H, W)``.
        point_embedding : Tensor
            Prompt/output tokens ``(B, Nt, C)``; also used as their positional encoding.

        Returns
        -------
        (tokens, image) : tuple of Tensor
            Updated tokens ``(B, Nt, C)`` and image tokens ``(B, H*W, C)``.
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for block in self.layers:
            queries, keys = block(queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe)
        attn = self.final_attn_token_to_image(
            q=queries + point_embedding, k=keys + key_pe, v=keys
        )
        queries = self.norm_final_attn(queries + attn)
        return queries, keys
