"""Memory encoder: fuse a frame's features with its predicted mask into a memory."""

from __future__ import annotations

import copy
import math
from typing import Dict, List, Optional, Type

import torch
from torch import nn

from .common import DropPath, LayerNorm2d

__all__ = ["MaskDownSampler", "CXBlock", "Fuser", "MemoryEncoder"]


class MaskDownSampler(nn.Module):
    """Downsample a mask by ``total_stride`` with repeated strided convolutions.

    Each step multiplies the channel count by ``stride ** 2``; a final 1x1
    convolution projects to ``embed_dim`` channels.

    Parameters
    ----------
    embed_dim : int
        Output channels.
    kernel_size, stride, padding : int
        Convolution settings of every step.
    total_stride : int
        Overall downsampling; must be a power of ``stride``.
    activation : type of nn.Module
        Activation after every step.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        kernel_size: int = 4,
        stride: int = 4,
        padding: int = 0,
        total_stride: int = 16,
        activation: Type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        num_steps = int(round(math.log(total_stride) / math.log(stride)))
        if stride**num_steps != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        self.encoder = nn.Sequential()
        channels = 1
        for _ in range(num_steps):
            out_channels = channels * stride**2
            self.encoder.append(
                nn.Conv2d(channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding)
            )
            self.encoder.append(LayerNorm2d(out_channels))
            self.encoder.append(activation())
            channels = out_channels
        self.encoder.append(nn.Conv2d(channels, embed_dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> ``(B, embed_dim, H / total_stride, W / total_stride)``."""
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm, pointwise MLP, layer scale, residual.

    Parameters
    ----------
    dim : int
        Channels.
    kernel_size, padding : int
        Spatial convolution settings.
    drop_path : float
        Stochastic depth rate.
    layer_scale_init_value : float
        Initial layer-scale value; <= 0 disables layer scale.
    use_dwconv : bool
        Depthwise (True) or dense spatial convolution.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        padding: int = 3,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(
            dim, dim, kernel_size=kernel_size, padding=padding, groups=dim if use_dwconv else 1
        )
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma: Optional[nn.Parameter] = (
            nn.Parameter(layer_scale_init_value * torch.ones(dim))
            if layer_scale_init_value > 0
            else None
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(N, C, H, W)``."""
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # channels last for Linear
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Fuser(nn.Module):
    """Optional 1x1 input projection followed by ``num_layers`` copies of ``layer``."""

    def __init__(
        self, layer: nn.Module, num_layers: int, dim: Optional[int] = None, input_projection: bool = False
    ) -> None:
        super().__init__()
        self.proj: nn.Module = nn.Identity()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        if input_projection:
            if dim is None:
                raise ValueError("Fuser needs dim when input_projection is True")
            self.proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project, then apply the layers in order."""
        x = self.proj(x)
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encode (pixel features, mask) of a frame into memory features and their encoding.

    Parameters
    ----------
    out_dim : int
        Memory channels.
    mask_downsampler : nn.Module
        Brings the mask to the feature resolution and width (:class:`MaskDownSampler`).
    fuser : nn.Module
        Mixes features and mask (:class:`Fuser`).
    position_encoding : nn.Module
        Positional encoding of the output grid (a ``PositionEmbeddingSine``).
    in_dim : int
        Channels of the pixel features.
    """

    def __init__(
        self,
        out_dim: int,
        mask_downsampler: nn.Module,
        fuser: nn.Module,
        position_encoding: nn.Module,
        in_dim: int = 256,
    ) -> None:
        super().__init__()
        self.mask_downsampler = mask_downsampler
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = fuser
        self.position_encoding = position_encoding
        self.out_proj: nn.Module = nn.Identity()
        if out_dim != in_dim:
            self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False
    ) -> Dict[str, object]:
        """Encode one memory.

        Parameters
        ----------
        pix_feat : Tensor
            ``(B, in_dim, h, w)`` image features.
        masks : Tensor
            ``(B, 1, H, W)`` mask logits (or probabilities with ``skip_mask_sigmoid``),
            ``H / h`` equal to the downsampler's total stride.
        skip_mask_sigmoid : bool
            Use ``masks`` as given instead of applying a sigmoid.

        Returns
        -------
        dict
            ``{"vision_features": (B, out_dim, h, w), "vision_pos_enc": [pos]}``.
        """
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        mask_feat = self.mask_downsampler(masks)
        x = self.pix_feat_proj(pix_feat.to(mask_feat.device)) + mask_feat
        x = self.out_proj(self.fuser(x))
        pos: List[torch.Tensor] = [self.position_encoding(x).to(x.dtype)]
        return {"vision_features": x, "vision_pos_enc": pos}
