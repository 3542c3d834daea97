"""SAM2's memory attention as an ONNX graph with a variable number of memory tokens.

The graph is :class:`~napari_sam2med.sam2.memory_attention.MemoryAttention` written with the same
sub-modules (linear layers, layer norms) but with the rotary encoding as real-valued arithmetic
whose key table is an *input*: the spatial memory tokens get the grid's rotation tiled over their
frames and the object-pointer tokens the identity (cos 1, sin 0), which is exactly what
``num_k_exclude_rope`` does. So one export serves every memory length and pointer count
(the memory-token axis and the object batch are dynamic) at one image size.

Two exact rewrites make it cheaper than the module (results differ only by float rounding, ~1e-6):
values narrower than the attention width (SAM2's 64-channel memory tokens) are projected *after*
the attention-weighted sum (softmax rows sum to one, so ``A (M Wᵀ + b) = (A M) Wᵀ + b``), and the
scores are formed in blocks of ``q_chunk`` queries, so no (queries × memory tokens) matrix is held
whole (at 1024 px one would be 470 MB per object).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..sam2.memory_attention import MemoryAttention
from ..sam2.position_encoding import compute_axial_rope
from ..sam2.transformer import RoPEAttention

__all__ = ["MemAttnGraph", "OnnxMemoryAttention", "key_rope_tables", "memattn_export_args", "MEMATTN_INPUTS"]

MEMATTN_INPUTS = ("curr", "curr_pos", "memory", "memory_pos", "k_cos", "k_sin")


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` (B, N, C) by angles given as (N, C/2) cos / sin."""
    pairs = x.reshape(x.shape[0], x.shape[1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


def key_rope_tables(model_attention: MemoryAttention, grid: tuple[int, int], n_frames: int, n_ptr: int):
    """``(cos, sin)`` (M, C/2) for ``n_frames`` spatial memories of ``grid`` (H, W) then ``n_ptr`` pointer tokens."""
    attn = model_attention.layers[0].cross_attn_image
    h, w = grid
    cos, sin = compute_axial_rope(attn.internal_dim // attn.num_heads, w, h, attn.rope_theta)
    cos, sin = cos.repeat(n_frames, 1), sin.repeat(n_frames, 1)
    if n_ptr:
        cos = torch.cat([cos, cos.new_ones(n_ptr, cos.shape[1])])
        sin = torch.cat([sin, sin.new_zeros(n_ptr, sin.shape[1])])
    return cos, sin


class MemAttnGraph(nn.Module):
    """What is exported: ``MemoryAttention`` on batch-first tokens, key RoPE table as input.

    Parameters
    ----------
    attention : MemoryAttention
        The model's memory attention (single-head RoPE attentions, as in every SAM2 config).
    grid : (int, int)
        Height and width of the current frame's token grid.
    q_chunk : int
        Queries per block of attention scores.
    """

    def __init__(self, attention: MemoryAttention, grid: tuple[int, int], q_chunk: int = 512):
        super().__init__()
        for layer in attention.layers:
            for a in (layer.self_attn, layer.cross_attn_image):
                if not isinstance(a, RoPEAttention) or a.num_heads != 1:
                    raise ValueError("the ONNX memory attention supports single-head RoPE attention only")
        if not attention.batch_first:
            raise ValueError("the ONNX memory attention expects a batch-first MemoryAttention")
        self.attention = attention
        self.q_chunk = int(q_chunk)
        h, w = grid
        first = attention.layers[0].self_attn
        cos, sin = compute_axial_rope(first.internal_dim, w, h, first.rope_theta)
        self.register_buffer("q_cos", cos, persistent=False)
        self.register_buffer("q_sin", sin, persistent=False)

    def _attn(self, attn: RoPEAttention, q, k, v, k_cos, k_sin):
        q = _rotate(attn.q_proj(q), self.q_cos, self.q_sin) * attn.internal_dim ** -0.5
        k = _rotate(attn.k_proj(k), k_cos, k_sin).transpose(1, 2)
        low_rank = v.shape[-1] < attn.internal_dim
        # softmax rows sum to one, so attn @ (v W^T + b) == (attn @ v) W^T + b: with narrow memory
        # tokens (64 channels) the value product is 4x cheaper in the input width.
        if not low_rank:
            v = attn.v_proj(v)
        chunks = []
        for start in range(0, q.shape[1], self.q_chunk):  # bounded (chunk, M) score blocks
            w = torch.softmax(torch.matmul(q[:, start:start + self.q_chunk], k), dim=-1)
            chunks.append(torch.matmul(w, v))
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)
        if low_rank:
            out = attn.v_proj(out)
        return attn.out_proj(out)

    def forward(self, curr, curr_pos, memory, memory_pos, k_cos, k_sin):
        """Tokens are batch-first: curr/curr_pos (B, HW, C), memory/memory_pos (B, M, C_mem)."""
        a = self.attention
        out = curr + 0.1 * curr_pos if a.pos_enc_at_input else curr
        for layer in a.layers:
            normed = layer.norm1(out)
            qk = normed + curr_pos if layer.pos_enc_at_attn else normed
            out = out + self._attn(layer.self_attn, qk, qk, normed, self.q_cos, self.q_sin)
            normed = layer.norm2(out)
            q = normed + curr_pos if layer.pos_enc_at_cross_attn_queries else normed
            k = memory + memory_pos if layer.pos_enc_at_cross_attn_keys else memory
            out = out + self._attn(layer.cross_attn_image, q, k, memory, k_cos, k_sin)
            normed = layer.norm3(out)
            out = out + layer.linear2(layer.activation(layer.linear1(normed)))
        return a.norm(out)


def _grid(model) -> tuple[int, int]:
    side = int(model.image_size) // 16  # the stride-16 map the memory attention works on
    return side, side


def memattn_export_args(model):
    """``(graph, example inputs, input names, dynamic shapes)`` for exporting ``model``'s memory attention."""
    from torch.export import Dim

    h, w = _grid(model)
    graph = MemAttnGraph(model.memory_attention, (h, w)).eval()
    c = model.config.d_model
    mem_dim = model.memory_attention.layers[0].cross_attn_image.kv_in_dim
    b, m = 2, 2 * h * w + 8  # not 1: the exporter specialises size-1 dimensions
    cos, sin = key_rope_tables(model.memory_attention, (h, w), 2, 8)
    dev = model.device
    args = (torch.zeros(b, h * w, c, device=dev), torch.zeros(b, h * w, c, device=dev),
            torch.zeros(b, m, mem_dim, device=dev), torch.zeros(b, m, mem_dim, device=dev), cos.to(dev), sin.to(dev))
    batch, tokens = Dim("objects", min=1, max=1024), Dim("memory_tokens", min=1, max=1 << 20)
    dynamic = {"curr": {0: batch}, "curr_pos": {0: batch}, "memory": {0: batch, 1: tokens},
               "memory_pos": {0: batch, 1: tokens}, "k_cos": {0: tokens}, "k_sin": {0: tokens}}
    return graph, args, list(MEMATTN_INPUTS), dynamic


class OnnxMemoryAttention:
    """The memory attention on ONNX Runtime / OpenVINO, called like ``MemoryAttention``.

    Parameters
    ----------
    model : SAM2Model
        A CPU model; its memory attention is exported (or taken from the cache) on construction.
    folder : path, optional
        Export cache folder (default ``onnx_engine.onnx_cache_dir()``).
    threads : int, optional
        Intra-op threads (default ``torch.get_num_threads()``).
    runtime : {"onnx", "openvino"}
        The runtime.
    """

    def __init__(self, model, *, folder: str | Path | None = None, threads: int | None = None,
                 runtime: str = "onnx"):
        from .onnx_engine import OnnxExportError, ensure_exported

        if model.device.type != "cpu":
            raise OnnxExportError(f"the ONNX engine runs on the CPU, the model is on {model.device}")
        self.name = runtime
        self.grid = _grid(model)
        self._attention = model.memory_attention
        self.path, self.session = ensure_exported(model, folder=folder, threads=threads, part="memattn",
                                                  runtime=runtime)
        self._tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _key_tables(self, n_tokens: int, n_ptr: int):
        key = (n_tokens, n_ptr)
        if key not in self._tables:
            hw = self.grid[0] * self.grid[1]
            if (n_tokens - n_ptr) % hw:
                raise ValueError(f"{n_tokens - n_ptr} spatial memory tokens are not whole frames of {hw} tokens")
            cos, sin = key_rope_tables(self._attention, self.grid, (n_tokens - n_ptr) // hw, n_ptr)
            self._tables = {key: (cos.numpy(), sin.numpy())}  # one memory layout at a time is typical
        return self._tables[key]

    def __call__(self, curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens: int = 0, feat_hw=None):
        """Same arguments and result as :meth:`MemoryAttention.forward` (sequence-first tokens)."""
        if isinstance(curr, list):
            curr, curr_pos = curr[0], curr_pos[0]
        if feat_hw is not None and tuple(feat_hw) != self.grid:
            raise ValueError(f"the ONNX memory attention was exported for a {self.grid} grid, got {feat_hw}")
        bf = lambda t: np.ascontiguousarray(t.detach().float().transpose(0, 1).numpy())  # noqa: E731
        cos, sin = self._key_tables(memory.shape[0], int(num_obj_ptr_tokens))
        feed = {"curr": bf(curr), "curr_pos": bf(curr_pos), "memory": bf(memory), "memory_pos": bf(memory_pos),
                "k_cos": cos, "k_sin": sin}
        out = self.session.run(feed)[0]
        return torch.from_numpy(out).transpose(0, 1)
