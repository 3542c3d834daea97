"""Point prompts -> sparse embeddings, and the per-ROI mask decoder of SAM2Flow."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["sine_encoding", "PointPromptEncoder", "RoiDecoder"]


def sine_encoding(coords: torch.Tensor, dim: int) -> torch.Tensor:
    """Multi-frequency sine/cosine encoding of normalised (row, col) coordinates.

    Parameters
    ----------
    coords : torch.Tensor
        (..., 2) coordinates in [0, 1].
    dim : int
        Output channels (multiple of 4).

    Returns
    -------
    torch.Tensor
        (..., dim) encoding.
    """
    n_freq = dim // 4
    # Periods from 2 down to 1/64 of the image: fine enough for 1/4-resolution cells.
    freqs = math.pi * 2.0 ** torch.linspace(0.0, 7.0, n_freq, device=coords.device, dtype=coords.dtype)
    angles = coords[..., :, None] * freqs  # (..., 2, n_freq)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return enc.flatten(-2)


class PointPromptEncoder(nn.Module):
    """Embed point prompts: sine position encoding + learned label embedding.

    Labels are 1 (positive), 0 (negative) or -1 (padding, embedded but masked out).
    """

    def __init__(self, dim: int = 64):
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(dim, dim)
        self.label_embed = nn.Embedding(3, dim)  # 0 = negative, 1 = positive, 2 = padding

    def forward(self, points: torch.Tensor, labels: torch.Tensor, size: tuple[int, int]):
        """Embed (B, R, P, 2) (row, col) points with (B, R, P) labels on an image of ``size``."""
        scale = points.new_tensor([size[0], size[1]])
        pos = sine_encoding((points + 0.5) / scale, self.dim)
        lab = torch.where(labels < 0, torch.full_like(labels, 2), labels).long()
        tokens = self.proj(pos) + self.label_embed(lab)
        return tokens * (labels >= 0).unsqueeze(-1).to(tokens.dtype), labels >= 0


class _CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, q, k, v, key_padding_mask=None):
        out, _ = self.attn(q, k, v, key_padding_mask=key_padding_mask, need_weights=False)
        return self.norm(q + out)


class RoiDecoder(nn.Module):
    """Predict one mask logit map per ROI from image features and its prompt tokens.

    A learned ROI token joins the point tokens; two rounds of token self-attention and
    token-to-image cross-attention, one image-to-token update, then the ROI token
    (through an MLP) is dotted with the image features (hypernetwork-style, as in SAM).
    """

    def __init__(self, feat_dim: int, dim: int = 64, heads: int = 4):
        super().__init__()
        self.dim = dim
        self.image_in = nn.Conv2d(feat_dim, dim, 1)
        self.roi_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.self_attn = nn.ModuleList(_CrossAttention(dim, heads) for _ in range(2))
        self.to_image = nn.ModuleList(_CrossAttention(dim, heads) for _ in range(2))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)) for _ in range(2)
        )
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.from_image = _CrossAttention(dim, heads)
        self.mask_feat = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, 32, 1))
        self.hyper = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 32))

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, R, h, w) from features (B, C, h, w) and tokens (B, R, P, dim)."""
        b, r, p, _ = tokens.shape
        _, _, h, w = feats.shape
        img = self.image_in(feats)
        pos = sine_encoding(_grid(h, w, feats), self.dim)  # (h*w, dim)
        img_seq = (img.flatten(2).transpose(1, 2) + pos)  # (B, hw, dim)
        img_seq = img_seq.repeat_interleave(r, dim=0)  # (B*R, hw, dim)
        tok = torch.cat([self.roi_token.expand(b * r, 1, -1), tokens.reshape(b * r, p, -1)], dim=1)
        pad = torch.cat([valid.new_zeros(b * r, 1), ~valid.reshape(b * r, p)], dim=1)
        for self_attn, to_img, mlp, norm in zip(self.self_attn, self.to_image, self.mlps, self.mlp_norms):
            tok = self_attn(tok, tok, tok, key_padding_mask=pad)
            tok = to_img(tok, img_seq, img_seq)
            tok = norm(tok + mlp(tok))
        img_seq = self.from_image(img_seq, tok, tok, key_padding_mask=pad) - pos
        img_map = img_seq.transpose(1, 2).reshape(b * r, self.dim, h, w)
        weights = self.hyper(tok[:, 0])  # (B*R, 32)
        logits = torch.einsum("nc,nchw->nhw", weights, self.mask_feat(img_map))
        return logits.view(b, r, h, w)


def _grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    rows = (torch.arange(h, device=like.device, dtype=like.dtype) + 0.5) / h
    cols = (torch.arange(w, device=like.device, dtype=like.dtype) + 0.5) / w
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([rr, cc], dim=-1).reshape(-1, 2)
