"""Image encoders of SAM2Flow: a CNN matching encoder and a Hiera context encoder.

Both work on gray frames ``(B, 1, H, W)`` in [0, 1] whose sides are multiples of 32
and return maps at 1/4 resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...sam2.hiera import Hiera

__all__ = ["ResidualBlock", "MatchingEncoder", "HieraContextEncoder"]


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a (strided) shortcut, instance or group norm."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, norm: str = "instance"):
        super().__init__()

        def make_norm(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c) if norm == "instance" else nn.GroupNorm(8, c)

        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1, self.norm2 = make_norm(c_out), make_norm(c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride), make_norm(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu(self.shortcut(x) + y)


class MatchingEncoder(nn.Module):
    """CNN producing per-pixel matching features at 1/4 resolution (instance-normed)."""

    def __init__(self, out_dim: int = 96, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 7, stride=2, padding=3), nn.InstanceNorm2d(width), nn.ReLU()
        )
        self.layers = nn.Sequential(
            ResidualBlock(width, width),
            ResidualBlock(width, 2 * width, stride=2),
            ResidualBlock(2 * width, 2 * width),
        )
        self.out = nn.Conv2d(2 * width, out_dim, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.out(self.layers(self.stem(2.0 * frames - 1.0)))


class BottleneckAdapter(nn.Module):
    """1x1 down-projection, GELU, 1x1 up-projection with a linear shortcut."""

    def __init__(self, c_in: int, c_out: int, bottleneck: int = 32):
        super().__init__()
        self.skip = nn.Conv2d(c_in, c_out, 1)
        self.down = nn.Conv2d(c_in, bottleneck, 1)
        self.up = nn.Conv2d(bottleneck, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.up(F.gelu(self.down(x)))


class HieraContextEncoder(nn.Module):
    """SAM2 Hiera trunk plus adapters fusing its stride-4/8/16/32 maps at 1/4 resolution.

    Parameters
    ----------
    out_dim : int
        Channels of the fused context map.
    embed_dim, num_heads, stages, window_spec, global_att_blocks, bkg_size
        Hiera configuration (a small one by default).
    """

    def __init__(
        self,
        out_dim: int = 128,
        embed_dim: int = 32,
        num_heads: int = 1,
        stages: tuple = (1, 1, 2, 1),
        window_spec: tuple = (8, 4, 4, 4),
        global_att_blocks: tuple = (3,),
        bkg_size: tuple = (8, 8),
    ):
        super().__init__()
        self.trunk = Hiera(
            embed_dim=embed_dim,
            num_heads=num_heads,
            stages=stages,
            window_spec=window_spec,
            global_att_blocks=global_att_blocks,
            window_pos_embed_bkg_spatial_size=bkg_size,
            return_interm_layers=True,
        )
        dims = [embed_dim * 2**i for i in range(len(stages))]
        self.adapters = nn.ModuleList([BottleneckAdapter(d, out_dim) for d in dims])
        self.fuse = nn.Sequential(
            nn.Conv2d(out_dim, out_dim, 3, padding=1), nn.GroupNorm(8, out_dim), nn.GELU(),
            nn.Conv2d(out_dim, out_dim, 3, padding=1),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        feats = self.trunk(((frames - 0.5) / 0.25).expand(-1, 3, -1, -1))
        size = feats[0].shape[-2:]
        fused = 0
        for feat, adapter in zip(feats, self.adapters):
            y = adapter(feat)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            fused = fused + y
        return self.fuse(fused)
