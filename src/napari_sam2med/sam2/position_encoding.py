"""Positional encodings used by the SAM2 model.

Three families live here:

* :class:`PositionEmbeddingSine` - the DETR-style 2D sine/cosine grid encoding used
  by the image-encoder neck and the memory encoder;
* :class:`PositionEmbeddingRandom` - SAM's random Fourier-feature encoding used by the
  prompt encoder (its frequency matrix is a checkpoint buffer);
* 2D axial rotary encodings (RoPE) used by the memory-attention layers, and the 1D
  sine encoding used for temporal positions of object pointers.

The rotary tables are kept as real ``(cos, sin)`` pairs instead of complex numbers so
that they work on every backend (MPS has no complex support); the values equal the
complex formulation of the reference implementation.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn

__all__ = [
    "PositionEmbeddingSine",
    "PositionEmbeddingRandom",
    "get_1d_sine_pe",
    "compute_axial_rope",
    "apply_axial_rope",
]


def _sine_frequencies(n: int, temperature: float, device) -> torch.Tensor:
    """Return ``temperature ** (2 * (i // 2) / n)`` for ``i`` in ``0..n-1`` (float32)."""
    idx = torch.arange(n, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / n)


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """Sine of even channels and cosine of odd channels, interleaved along the last dim."""
    sin = angles[..., 0::2].sin()
    cos = angles[..., 1::2].cos()
    return torch.stack((sin, cos), dim=-1).flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """2D sine/cosine positional encoding over a feature grid.

    Parameters
    ----------
    num_pos_feats : int
        Number of output channels (must be even); half encode rows, half columns.
    temperature : float
        Base of the geometric frequency progression.
    normalize : bool
        If True, positions are scaled to ``(0, scale]`` along each axis.
    scale : float, optional
        Scale applied after normalisation (default ``2 * pi``).
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature: float = 10000,
        normalize: bool = True,
        scale: Optional[float] = None,
    ) -> None:
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale can only be given together with normalize=True")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self._grid_cache: Dict[Tuple[int, int, str], torch.Tensor] = {}

    @torch.no_grad()
    def _grid(self, height: int, width: int, device) -> torch.Tensor:
        key = (height, width, str(device))
        cached = self._grid_cache.get(key)
        if cached is not None:
            return cached
        rows = torch.arange(1, height + 1, dtype=torch.float32, device=device)
        cols = torch.arange(1, width + 1, dtype=torch.float32, device=device)
        if self.normalize:
            eps = 1e-6
            rows = rows / (rows[-1:] + eps) * self.scale
            cols = cols / (cols[-1:] + eps) * self.scale
        freqs = _sine_frequencies(self.num_pos_feats, self.temperature, device)
        pe_rows = _interleave_sin_cos(rows[:, None] / freqs)  # (H, F)
        pe_cols = _interleave_sin_cos(cols[:, None] / freqs)  # (W, F)
        pos = torch.cat(
            (
                pe_rows[:, None, :].expand(height, width, -1),
                pe_cols[None, :, :].expand(height, width, -1),
            ),
            dim=-1,
        ).permute(2, 0, 1)
        pos = pos.contiguous()
        self._grid_cache[key] = pos
        return pos

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the encoding ``(B, num_pos_feats, H, W)`` for a tensor ``(B, C, H, W)``."""
        pos = self._grid(int(x.shape[-2]), int(x.shape[-1]), x.device)
        return pos[None].expand(x.shape[0], -1, -1, -1).clone()


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier-feature positional encoding of SAM's prompt encoder.

    Parameters
    ----------
    num_pos_feats : int
        Number of random frequencies; the encoding has ``2 * num_pos_feats`` channels.
    scale : float, optional
        Standard deviation of the random frequencies (``None`` or <= 0 means 1).
    """

    def __init__(self, num_pos_feats: int = 64, scale: Optional[float] = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def _encode_unit(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode ``(..., 2)`` xy coordinates normalised to ``[0, 1]``."""
        centred = 2 * coords - 1
        angles = 2 * math.pi * (centred @ self.positional_encoding_gaussian_matrix)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Return the dense encoding ``(C, H, W)`` of an ``(H, W)`` grid of cell centres."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid = torch.stack(
            (xs[None, :].expand(h, w), ys[:, None].expand(h, w)), dim=-1
        )
        return self._encode_unit(grid).permute(2, 0, 1)

    def forward_with_coords(
        self, coords_input: torch.Tensor, image_size: Tuple[int, int]
    ) -> torch.Tensor:
        """Encode pixel xy coordinates ``(B, N, 2)`` of an image of size ``(H, W)``."""
        size_xy = torch.tensor(
            [float(image_size[1]), float(image_size[0])], device=coords_input.device
        )
        coords = coords_input.to(torch.float) / size_xy
        return self._encode_unit(coords)


def get_1d_sine_pe(pos_inds: torch.Tensor, dim: int, temperature: float = 10000) -> torch.Tensor:
    """1D sine/cosine encoding of (possibly fractional) positions.

    Parameters
    ----------
    pos_inds : torch.Tensor
        Positions, any shape ``S``.
    dim : int
        Output channels; the first half are sines, the second half cosines.
    temperature : float
        Base of the frequency progression.

    Returns
    -------
    torch.Tensor
        Shape ``S + (dim,)``.
    """
    half = dim // 2
    freqs = _sine_frequencies(half, temperature, pos_inds.device)
    angles = pos_inds.unsqueeze(-1) / freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def compute_axial_rope(
    dim: int, end_x: int, end_y: int, theta: float = 10000.0, device=None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotation angles of 2D axial RoPE for a row-major ``end_y x end_x`` token grid.

    Parameters
    ----------
    dim : int
        Per-head channel count (multiple of 4); half the rotated pairs encode x, half y.
    end_x, end_y : int
        Grid width and height.
    theta : float
        Base of the frequency progression.

    Returns
    -------
    (cos, sin) : tuple of torch.Tensor
        Each of shape ``(end_x * end_y, dim // 2)``, one angle per channel pair.
    """
    end_x, end_y = int(end_x), int(end_y)
    n_freq = dim // 4
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, device=device)[:n_freq].float() / dim))
    token = torch.arange(end_x * end_y, dtype=torch.float32, device=device)
    pos_x = token % end_x
    pos_y = torch.div(token, end_x, rounding_mode="floor")
    angles = torch.cat([torch.outer(pos_x, freqs), torch.outer(pos_y, freqs)], dim=-1)
    return angles.cos(), angles.sin()


def _rotate_pairs(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs ``(a, b)`` of ``x`` by unit complex numbers.

    ``x`` is (..., N, C) and ``rotation`` is (N, C / 2) complex, broadcast over the leading axes
    (a caller with R stacked copies of the grid passes ``x`` viewed as (..., R, N, C)). One
    complex product is a single pass over the tensor; the real/imaginary form needs six.
    """
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)


def apply_axial_rope(
    xq: torch.Tensor,
    xk: torch.Tensor,
    rope: Tuple[torch.Tensor, torch.Tensor],
    repeat_freqs_k: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Apply axial RoPE to queries and keys of shape ``(B, heads, N, C)``.

    Parameters
    ----------
    xq, xk : torch.Tensor
        Queries ``(B, h, Nq, C)`` and keys ``(B, h, Nk, C)``; ``Nk`` may be 0.
    rope : (cos, sin)
        Tables from :func:`compute_axial_rope` with ``Nq`` rows.
    repeat_freqs_k : bool
        If True, keys hold ``Nk / Nq`` stacked copies of the query grid (memory of
        several frames) and the table is tiled accordingly.

    Returns
    -------
    (xq, xk) : tuple of torch.Tensor
        Rotated tensors in the input dtypes.
    """
    cos, sin = rope
    if cos.shape[0] != xq.shape[-2]:
        raise ValueError(
            f"RoPE table has {cos.shape[0]} positions but queries have {xq.shape[-2]} tokens"
        )
    rotation = torch.complex(cos.to(xq.device), sin.to(xq.device))
    q_out = _rotate_pairs(xq, rotation)
    if xk.shape[-2] == 0:
        return q_out, xk
    if repeat_freqs_k:
        # Keys hold several frames of the query grid: broadcast the table instead of tiling it.
        n = xq.shape[-2]
        k_out = _rotate_pairs(xk.unflatten(-2, (xk.shape[-2] // n, n)), rotation).flatten(-3, -2)
    else:
        k_out = _rotate_pairs(xk, rotation)
    return q_out, k_out
