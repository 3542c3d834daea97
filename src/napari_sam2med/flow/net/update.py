"""Iterative refinement of SAM2Flow: motion encoder, separable ConvGRU, flow/mask heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MotionEncoder", "SeparableConvGRU", "UpdateBlock", "convex_upsample"]


class MotionEncoder(nn.Module):
    """Encode the correlation look-up and the current flow into motion features."""

    def __init__(self, corr_channels: int, out_dim: int = 64):
        super().__init__()
        self.corr = nn.Sequential(
            nn.Conv2d(corr_channels, 96, 1), nn.ReLU(), nn.Conv2d(96, 64, 3, padding=1), nn.ReLU()
        )
        self.flow = nn.Sequential(
            nn.Conv2d(2, 32, 7, padding=3), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()
        )
        self.out = nn.Conv2d(96, out_dim - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.out(torch.cat([self.corr(corr), self.flow(flow)], dim=1)))
        return torch.cat([y, flow], dim=1)


class SeparableConvGRU(nn.Module):
    """ConvGRU applied with a 1x5 then a 5x1 kernel."""

    def __init__(self, hidden: int, inp: int):
        super().__init__()
        self.gates = nn.ModuleList()
        for kernel, pad in (((1, 5), (0, 2)), ((5, 1), (2, 0))):
            self.gates.append(
                nn.ModuleList(nn.Conv2d(hidden + inp, hidden, kernel, padding=pad) for _ in range(3))
            )

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for conv_z, conv_r, conv_q in self.gates:
            hx = torch.cat([h, x], dim=1)
            z, r = torch.sigmoid(conv_z(hx)), torch.sigmoid(conv_r(hx))
            q = torch.tanh(conv_q(torch.cat([r * h, x], dim=1)))
            h = (1 - z) * h + z * q
        return h


class UpdateBlock(nn.Module):
    """One refinement step: motion features + context -> GRU -> flow delta and upsampling mask.

    Parameters
    ----------
    corr_channels : int
        Channels of the correlation look-up.
    hidden, context : int
        GRU hidden size and channels of the per-pixel context input.
    upsample : int
        Factor of the convex upsampling (mask has ``upsample**2 * 9`` channels).
    """

    def __init__(self, corr_channels: int, hidden: int = 64, context: int = 128, upsample: int = 4):
        super().__init__()
        self.motion = MotionEncoder(corr_channels, 64)
        self.gru = SeparableConvGRU(hidden, 64 + context)
        self.flow_head = nn.Sequential(
            nn.Conv2d(hidden, 96, 3, padding=1), nn.ReLU(), nn.Conv2d(96, 2, 3, padding=1)
        )
        self.mask_head = nn.Sequential(
            nn.Conv2d(hidden, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, upsample**2 * 9, 1)
        )

    def forward(self, h, context, corr, flow):
        h = self.gru(h, torch.cat([self.motion(flow, corr), context], dim=1))
        return h, self.flow_head(h), 0.25 * self.mask_head(h)


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample a low-resolution flow as a learned convex combination of 3x3 neighbours.

    Parameters
    ----------
    flow : torch.Tensor
        (B, 2, h, w) flow in low-resolution pixels.
    mask : torch.Tensor
        (B, factor*factor*9, h, w) logits of the combination weights.
    factor : int
        Upsampling factor (flow values are scaled by it too).

    Returns
    -------
    torch.Tensor
        (B, 2, h*factor, w*factor) flow in full-resolution pixels.
    """
    b, _, h, w = flow.shape
    weights = torch.softmax(mask.view(b, 1, 9, factor, factor, h, w), dim=2)
    patches = F.unfold(factor * flow, 3, padding=1).view(b, 2, 9, 1, 1, h, w)
    up = (weights * patches).sum(dim=2)  # (B, 2, f, f, h, w)
    return up.permute(0, 1, 4, 2, 5, 3).reshape(b, 2, h * factor, w * factor)
