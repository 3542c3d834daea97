"""Memory attention: condition current-frame features on the memory bank."""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple, Union

from torch import Tensor, nn

from .common import get_activation_fn
from .transformer import RoPEAttention

__all__ = ["MemoryAttentionLayer", "MemoryAttention"]


class MemoryAttentionLayer(nn.Module):
    """Pre-norm block: self-attention, cross-attention to memory, feed-forward.

    Parameters
    ----------
    activation : str
        Feed-forward activation ("relu", "gelu").
    cross_attention : nn.Module
        Attention from current tokens to memory tokens (usually a RoPEAttention).
    d_model, dim_feedforward : int
        Token width and feed-forward hidden width.
    dropout : float
        Dropout rate (training only).
    pos_enc_at_attn : bool
        Add the query positional encoding before self-attention.
    pos_enc_at_cross_attn_keys, pos_enc_at_cross_attn_queries : bool
        Add positional encodings to memory keys / current queries in cross-attention.
    self_attention : nn.Module
        Self-attention of the current tokens.
    """

    def __init__(
        self,
        activation: str,
        cross_attention: nn.Module,
        d_model: int,
        dim_feedforward: int,
        dropout: float,
        pos_enc_at_attn: bool,
        pos_enc_at_cross_attn_keys: bool,
        pos_enc_at_cross_attn_queries: bool,
        self_attention: nn.Module,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.dim_feedforward = dim_feedforward
        self.dropout_value = dropout
        self.self_attn = self_attention
        self.cross_attn_image = cross_attention
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation_str = activation
        self.activation = get_activation_fn(activation)
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys

    @staticmethod
    def _call_attention(attn: nn.Module, q, k, v, num_k_exclude_rope: int, feat_hw):
        if isinstance(attn, RoPEAttention):
            return attn(q, k, v, num_k_exclude_rope=num_k_exclude_rope, feat_hw=feat_hw)
        if num_k_exclude_rope > 0:
            raise ValueError("num_k_exclude_rope needs a RoPEAttention cross-attention")
        return attn(q, k, v)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        num_k_exclude_rope: int = 0,
        feat_hw: Optional[Tuple[int, int]] = None,
    ) -> Tensor:
        """Update current tokens ``tgt`` (B, N, C) given ``memory`` (B, M, C_mem).

        ``pos`` / ``query_pos`` are the memory / current positional encodings; the
        last ``num_k_exclude_rope`` memory tokens get no rotary encoding.
        """
        normed = self.norm1(tgt)
        qk = normed + query_pos if self.pos_enc_at_attn else normed
        tgt = tgt + self.dropout1(self._call_attention(self.self_attn, qk, qk, normed, 0, feat_hw))

        normed = self.norm2(tgt)
        q = normed + query_pos if self.pos_enc_at_cross_attn_queries else normed
        k = memory + pos if self.pos_enc_at_cross_attn_keys else memory
        attn = self._call_attention(self.cross_attn_image, q, k, memory, num_k_exclude_rope, feat_hw)
        tgt = tgt + self.dropout2(attn)

        normed = self.norm3(tgt)
        ff = self.linear2(self.dropout(self.activation(self.linear1(normed))))
        return tgt + self.dropout3(ff)


class MemoryAttention(nn.Module):
    """A stack of :class:`MemoryAttentionLayer` followed by a LayerNorm.

    Parameters
    ----------
    d_model : int
        Token width.
    pos_enc_at_input : bool
        Add ``0.1 * curr_pos`` to the current tokens before the first layer.
    layer : MemoryAttentionLayer
        Template layer; ``num_layers`` independent deep copies are made.
    num_layers : int
        Number of layers.
    batch_first : bool
        If True, inputs are sequence-first ``(N, B, C)`` and transposed to batch-first
        for the layers (the layers expect batch-first tokens), as in SAM2.
    """

    def __init__(
        self,
        d_model: int,
        pos_enc_at_input: bool,
        layer: nn.Module,
        num_layers: int,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = nn.LayerNorm(d_model)
        self.pos_enc_at_input = pos_enc_at_input
        self.batch_first = batch_first

    def forward(
        self,
        curr: Union[Tensor, List[Tensor]],
        memory: Tensor,
        curr_pos: Optional[Union[Tensor, List[Tensor]]] = None,
        memory_pos: Optional[Tensor] = None,
        num_obj_ptr_tokens: int = 0,
        feat_hw: Optional[Tuple[int, int]] = None,
    ) -> Tensor:
        """Condition current-frame tokens on memory.

        Parameters
        ----------
        curr : Tensor or [Tensor]
            Current-frame tokens ``(HW, B, C)`` (row-major grid).
        memory : Tensor
            Memory tokens ``(M, B, C_mem)``: spatial memories of frames, then
            ``num_obj_ptr_tokens`` object-pointer tokens at the end.
        curr_pos, memory_pos : Tensor, optional
            Positional encodings of the same shapes.
        num_obj_ptr_tokens : int
            Trailing memory tokens excluded from the rotary encoding.
        feat_hw : (int, int), optional
            Grid size of ``curr`` when it is not square.

        Returns
        -------
        Tensor
            Updated tokens ``(HW, B, C)``.
        """
        if isinstance(curr, list):
            if not isinstance(curr_pos, list) or len(curr) != 1 or len(curr_pos) != 1:
                raise ValueError("list inputs must hold exactly one level for curr and curr_pos")
            curr, curr_pos = curr[0], curr_pos[0]
        if curr.shape[1] != memory.shape[1]:
            raise ValueError(
                f"batch size differs between curr ({curr.shape[1]}) and memory ({memory.shape[1]})"
            )
        output = curr
        if self.pos_enc_at_input and curr_pos is not None:
            output = output + 0.1 * curr_pos

        def _swap(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.transpose(0, 1)

        if self.batch_first:
            output, curr_pos = _swap(output), _swap(curr_pos)
            memory, memory_pos = _swap(memory), _swap(memory_pos)

        for layer in self.layers:
            n_excl = num_obj_ptr_tokens if isinstance(layer.cross_attn_image, RoPEAttention) else 0
            output = layer(
                tgt=output,
                memory=memory,
                pos=memory_pos,
                query_pos=curr_pos,
                num_k_exclude_rope=n_excl,
                feat_hw=feat_hw,
            )
        output = self.norm(output)
        return _swap(output) if self.batch_first else output
