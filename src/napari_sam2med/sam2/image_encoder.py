"""SAM2 image encoder: Hiera trunk followed by a feature-pyramid neck.

Attribute names follow the official SAM2 code (``trunk``, ``neck``,
``neck.convs.N.conv``) so official state dicts load strictly.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FpnNeck", "ImageEncoder"]

_INTERP_MODES = ("bilinear", "nearest", "bicubic")


def _pointwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1x1 convolution; as a matrix product over channels when ``x`` is channels-last.

    The trunk hands over NCHW views of channels-last memory, on which CPU convolution takes a
    slow generic path (about 10 ms for one 1x1 lateral at 256 px); the same arithmetic as a
    linear layer over the last axis needs no copy.
    """
    pointwise = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
    if pointwise and conv.groups == 1 and x.dim() == 4 and x.permute(0, 2, 3, 1).is_contiguous():
        y = F.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias)
        return y.permute(0, 3, 1, 2)
    return conv(x)


class FpnNeck(nn.Module):
    """Feature pyramid neck: 1x1 lateral convs plus a partial top-down pathway.

    Parameters
    ----------
    d_model : int
        Output channels of every pyramid level.
    backbone_channel_list : sequence of int
        Trunk channels from lowest to highest resolution (``Hiera.channel_list``).
    kernel_size, stride, padding : int
        Lateral convolution geometry.
    fpn_interp_model : str
        Upsampling mode of the top-down path ("bilinear", "nearest" or "bicubic").
    fuse_type : str
        "sum" or "avg" of lateral and top-down features.
    fpn_top_down_levels : sequence of int, optional
        Output levels (0 = highest resolution) that receive top-down features;
        default all levels.
    position_encoding : nn.Module, optional
        Module mapping (B, C, H, W) to a (B, d_model, H, W) position encoding;
        default a ``PositionEmbeddingSine(d_model)``.
    """

    def __init__(
        self,
        d_model: int,
        backbone_channel_list: Sequence[int],
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        fpn_interp_model: str = "bilinear",
        fuse_type: str = "sum",
        fpn_top_down_levels: Optional[Sequence[int]] = None,
        position_encoding: Optional[nn.Module] = None,
    ):
        super().__init__()
        if fpn_interp_model not in _INTERP_MODES:
            raise ValueError(f"fpn_interp_model must be one of {_INTERP_MODES}, got {fpn_interp_model!r}")
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        if position_encoding is None:
            from .position_encoding import PositionEmbeddingSine

            position_encoding = PositionEmbeddingSine(d_model)
        self.position_encoding = position_encoding
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for channels in self.backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module(
                "conv",
                nn.Conv2d(channels, d_model, kernel_size=kernel_size, stride=stride, padding=padding),
            )
            self.convs.append(lateral)
        self.fpn_interp_model = fpn_interp_model
        self.fuse_type = fuse_type
        n_levels = len(self.backbone_channel_list)
        levels = range(n_levels) if fpn_top_down_levels is None else fpn_top_down_levels
        self.fpn_top_down_levels = list(levels)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        # Upsampling runs in float32 (as the reference does) to keep mixed-precision parity.
        align = None if self.fpn_interp_model == "nearest" else False
        return F.interpolate(
            x.float(), scale_factor=2.0, mode=self.fpn_interp_model, align_corners=align
        )

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Fuse trunk features.

        Parameters
        ----------
        xs : sequence of torch.Tensor
            Trunk outputs from highest to lowest resolution.

        Returns
        -------
        features, positions : list of torch.Tensor
            One (B, d_model, H_i, W_i) map and its position encoding per level,
            highest resolution first.
        """
        n_levels = len(self.convs)
        if len(xs) != n_levels:
            raise ValueError(f"FpnNeck expects {n_levels} feature maps, got {len(xs)}")
        features: list[Optional[torch.Tensor]] = [None] * n_levels
        positions: list[Optional[torch.Tensor]] = [None] * n_levels
        coarser = None
        # Walk from the coarsest level to the finest; convs are stored coarsest first.
        for level in reversed(range(n_levels)):
            lateral = _pointwise_conv(self.convs[n_levels - 1 - level].conv, xs[level])
            if coarser is not None and level in self.fpn_top_down_levels:
                fused = lateral + self._upsample(coarser)
                if self.fuse_type == "avg":
                    fused = fused / 2
            else:
                fused = lateral
            coarser = fused
            features[level] = fused
            positions[level] = self.position_encoding(fused).to(fused.dtype)
        return features, positions


class ImageEncoder(nn.Module):
    """Trunk + neck, returning the feature dict consumed by the SAM2 heads.

    Parameters
    ----------
    trunk : nn.Module
        Backbone with a ``channel_list`` attribute (e.g. :class:`~.hiera.Hiera`).
    neck : FpnNeck
        Neck whose ``backbone_channel_list`` equals ``trunk.channel_list``.
    scalp : int
        Number of lowest-resolution levels dropped from the output (1 in all
        official SAM2 configs; the official class defaults to 0).
    """

    def __init__(self, trunk: nn.Module, neck: nn.Module, scalp: int = 1):
        super().__init__()
        if list(trunk.channel_list) != list(neck.backbone_channel_list):
            raise ValueError(
                f"trunk channels {list(trunk.channel_list)} do not match neck channels "
                f"{list(neck.backbone_channel_list)}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = int(scalp)

    def forward(self, images: torch.Tensor) -> dict:
        """Encode a batch of images.

        Parameters
        ----------
        images : torch.Tensor
            Shape (B, 3, H, W); H and W must be multiples of the trunk's total stride
            (32 for the official configs).

        Returns
        -------
        dict
            ``vision_features`` (lowest kept resolution, B x d_model x h x w),
            ``vision_pos_enc`` and ``backbone_fpn`` (lists, highest resolution first).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        stride = getattr(self.trunk, "total_stride", 1)
        if images.shape[-2] % stride or images.shape[-1] % stride:
            raise ValueError(
                f"image size {tuple(images.shape[-2:])} is not a multiple of {stride}"
            )
        features, positions = self.neck(self.trunk(images))
        if self.scalp > 0:
            features, positions = features[: -self.scalp], positions[: -self.scalp]
        return {
            "vision_features": features[-1],
            "vision_pos_enc": positions,
            "backbone_fpn": features,
        }
