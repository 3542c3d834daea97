"""Token-map helpers of the Hiera trunk: windows, query pooling and bias-filled padding.

All maps are channels-last (B, H, W, C).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["window_partition", "window_unpartition", "max_pool_hw", "pad_with_bias"]


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut a channels-last map into non-overlapping square windows.

    Parameters
    ----------
    x : torch.Tensor
        Tokens of shape (B, H, W, C).
    window : int
        Window side length; the map is zero-padded at the bottom/right to a multiple.

    Returns
    -------
    windows : torch.Tensor
        Shape (B * nH * nW, window, window, C), windows in row-major order per image.
    grid : tuple of int
        Number of windows (nH, nW) along rows and columns.
    """
    b, h, w, c = x.shape
    n_h, n_w = -(-h // window), -(-w // window)
    pad_h, pad_w = n_h * window - h, n_w * window - w
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    x = x.view(b, n_h, window, n_w, window, c).transpose(2, 3)
    return x.reshape(b * n_h * n_w, window, window, c), (n_h, n_w)


def window_unpartition(
    windows: torch.Tensor, grid: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Stitch windows from :func:`window_partition` back into a map and crop the padding.

    Parameters
    ----------
    windows : torch.Tensor
        Shape (B * nH * nW, s, s, C); ``s`` may differ from the partition window
        (queries pooled inside each window).
    grid : tuple of int
        Number of windows (nH, nW).
    hw : tuple of int
        Output height and width (H, W) to crop to.

    Returns
    -------
    torch.Tensor
        Shape (B, H, W, C).
    """
    n_h, n_w = grid
    s = windows.shape[1]
    b = windows.shape[0] // (n_h * n_w)
    x = windows.view(b, n_h, n_w, s, s, -1).transpose(2, 3)
    x = x.reshape(b, n_h * s, n_w * s, -1)
    h, w = hw
    if x.shape[1] != h or x.shape[2] != w:
        x = x[:, :h, :w, :]
    return x


def max_pool_hw(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Max-pool a channels-last map (B, H, W, C) with kernel = stride (floor mode)."""
    s_h, s_w = stride
    b, h, w, c = x.shape
    if h % s_h or w % s_w:
        x = x[:, : h - h % s_h, : w - w % s_w]
    # Elementwise maxima of strided slices keep the channels contiguous and vectorised. Measured
    # on CPU at 256 px: 1.1-1.7x faster than max_pool2d's NCHW round trip and 12-15x faster than
    # an ``amax`` over the two strided window axes; the result is bitwise equal to both.
    x = x.unflatten(2, (w // s_w, s_w)).unflatten(1, (h // s_h, s_h))  # (B, H', s_h, W', s_w, C)
    rows = x[:, :, 0]
    for i in range(1, s_h):
        rows = torch.maximum(rows, x[:, :, i])
    out = rows[:, :, :, 0]
    for j in range(1, s_w):
        out = torch.maximum(out, rows[:, :, :, j])
    return out


def pad_with_bias(t: torch.Tensor, window: int, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Pad projected tokens (B, H, W, N) to a window multiple with what zero tokens project to.

    The official encoder zero-pads the normalised tokens and then projects them, so every
    padded token's q/k/v is exactly the projection bias. Filling the padding with the bias
    after projecting only the real tokens gives the same attention input without the matrix
    work on the padding (up to 3x the real tokens in late stages at 128-512 px).
    """
    b, h, w, n = t.shape
    pad_h, pad_w = -h % window, -w % window
    if not (pad_h or pad_w):
        return t
    fill = bias if bias is not None else t.new_zeros(n)
    if pad_w:
        t = torch.cat([t, fill.expand(b, h, pad_w, n)], dim=2)
    if pad_h:
        t = torch.cat([t, fill.expand(b, pad_h, w + pad_w, n)], dim=1)
    return t
