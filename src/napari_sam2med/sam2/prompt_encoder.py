"""SAM prompt encoder: points, boxes and mask prompts to decoder embeddings."""

from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingRandom

__all__ = ["PromptEncoder"]

# Point labels understood by the encoder.
LABEL_PADDING = -1
LABEL_NEGATIVE = 0
LABEL_POSITIVE = 1
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3


class PromptEncoder(nn.Module):
    """Embed prompts into sparse tokens and a dense map for the mask decoder.

    Parameters
    ----------
    embed_dim : int
        Embedding width.
    image_embedding_size : (int, int)
        ``(H, W)`` of the image embedding (image size / 16).
    input_image_size : (int, int)
        ``(H, W)`` of the model input image; point coordinates are xy pixels in it.
    mask_in_chans : int
        Hidden channels of the mask-prompt downscaler.
    activation : type of nn.Module
        Activation of the mask-prompt downscaler.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Tuple[int, int],
        input_image_size: Tuple[int, int],
        mask_in_chans: int,
        activation: Type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # negative point, positive point, box top-left, box bottom-right
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        quarter = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, quarter, kernel_size=2, stride=2),
            LayerNorm2d(quarter),
            activation(),
            nn.Conv2d(quarter, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid, ``(1, C, H, W)``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords + 0.5  # pixel centres
        if pad:
            # One padding token stands in for the missing box.
            b = coords.shape[0]
            coords = torch.cat([coords, coords.new_zeros((b, 1, 2))], dim=1)
            labels = torch.cat([labels, -torch.ones((b, 1), device=labels.device, dtype=labels.dtype)], dim=1)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels.unsqueeze(-1)
        emb = torch.where(labels == LABEL_PADDING, self.not_a_point_embed.weight.expand_as(emb), emb)
        for label, table in enumerate(self.point_embeddings):
            emb = torch.where(labels == label, emb + table.weight, emb)
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_tokens = torch.cat(
            [
                self.point_embeddings[LABEL_BOX_TOP_LEFT].weight,
                self.point_embeddings[LABEL_BOX_BOTTOM_RIGHT].weight,
            ],
            dim=0,
        )
        return emb + corner_tokens

    @staticmethod
    def _batch_size(points, boxes, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed the prompts.

        Parameters
        ----------
        points : (coords, labels), optional
            ``coords`` ``(B, N, 2)`` xy pixels of the input image; ``labels`` ``(B, N)``
            with -1 padding, 0 negative, 1 positive, 2/3 box top-left/bottom-right.
        boxes : Tensor, optional
            ``(B, 4)`` boxes ``x0, y0, x1, y1``.
        masks : Tensor, optional
            ``(B, 1, *mask_input_size)`` mask logits.

        Returns
        -------
        (sparse, dense) : tuple of Tensor
            ``(B, N_tokens, C)`` and ``(B, C, H, W)``.
        """
        bs = self._batch_size(points, boxes, masks)
        device = self.point_embeddings[0].weight.device
        sparse = torch.empty((bs, 0, self.embed_dim), device=device)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
