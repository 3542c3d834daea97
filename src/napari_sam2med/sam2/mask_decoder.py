"""SAM2 mask decoder: turns image features and prompt tokens into mask logits."""

from __future__ import annotations

from typing import List, Optional, Tuple, Type

import torch
from torch import nn

from .common import MLP, LayerNorm2d

__all__ = ["MaskDecoder"]


class MaskDecoder(nn.Module):
    """Predict masks, IoU scores and an object score from prompt and image embeddings.

    Parameters
    ----------
    transformer_dim : int
        Channel width of the transformer (and the image embedding).
    transformer : nn.Module
        A :class:`~.transformer.TwoWayTransformer`.
    num_multimask_outputs : int
        Masks predicted in multimask mode; one extra token predicts the single mask.
    activation : type of nn.Module
        Activation of the upscaling path.
    iou_head_depth, iou_head_hidden_dim : int
        Size of the IoU prediction MLP.
    use_high_res_features : bool
        Add stride-4 and stride-8 backbone features while upscaling (``conv_s0``,
        ``conv_s1`` project them; the caller applies these projections).
    iou_prediction_use_sigmoid : bool
        Squash IoU predictions with a sigmoid.
    dynamic_multimask_via_stability : bool
        In single-mask eval mode, fall back to the best multimask output when the
        single mask is unstable.
    dynamic_multimask_stability_delta, dynamic_multimask_stability_thresh : float
        Logit offset and IoU threshold of the stability test.
    pred_obj_scores : bool
        Predict an object-presence logit from an extra token.
    pred_obj_scores_mlp : bool
        Use a 3-layer MLP (instead of a linear layer) for the object score.
    use_multimask_token_for_obj_ptr : bool
        In multimask mode return the multimask output tokens for object pointers.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: Type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        dynamic_multimask_via_stability: bool = False,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1

        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr

        d4, d8 = transformer_dim // 4, transformer_dim // 8
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, d4, kernel_size=2, stride=2),
            LayerNorm2d(d4),
            activation(),
            nn.ConvTranspose2d(d4, d8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(transformer_dim, d8, kernel_size=1, stride=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, d4, kernel_size=1, stride=1)

        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, d8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            if pred_obj_scores_mlp:
                self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, 3)
            else:
                self.pred_obj_score_head = nn.Linear(transformer_dim, 1)

        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode masks.

        Parameters
        ----------
        image_embeddings : Tensor
            ``(B_img, C, h, w)`` image features.
        image_pe : Tensor
            ``(1, C, h, w)`` positional encoding (from ``PromptEncoder.get_dense_pe``).
        sparse_prompt_embeddings, dense_prompt_embeddings : Tensor
            Outputs of the prompt encoder, ``(B, N, C)`` and ``(B, C, h, w)``.
        multimask_output : bool
            Return the multimask outputs instead of the single mask.
        repeat_image : bool
            Repeat each image embedding once per prompt batch entry.
        high_res_features : [feat_s0, feat_s1], optional
            Already projected stride-4 and stride-8 features.

        Returns
        -------
        masks : Tensor
            ``(B, M, 4h, 4w)`` mask logits (M = 3 or 1).
        iou_pred : Tensor
            ``(B, M)`` predicted IoUs.
        sam_tokens_out : Tensor
            ``(B, M', C)`` output tokens for object pointers.
        object_score_logits : Tensor
            ``(B, 1)`` object-presence logits (constant 10 without ``pred_obj_scores``).
        """
        masks, iou_pred, mask_tokens_out, obj_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image,
            high_res_features,
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]

        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            sam_tokens_out = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens_out, obj_logits

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict all ``num_mask_tokens`` masks; see :meth:`forward`."""
        learned = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            learned.insert(0, self.obj_score_token.weight)
        first = 1 if self.pred_obj_scores else 0  # index of the IoU token
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat(learned, dim=0).unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        if repeat_image:
            src = torch.repeat_interleave(image_embeddings, batch, dim=0)
        else:
            if image_embeddings.shape[0] != batch:
                raise ValueError(
                    f"image batch {image_embeddings.shape[0]} != prompt batch {batch}"
                )
            src = image_embeddings
        src = src + dense_prompt_embeddings
        if image_pe.shape[0] != 1:
            raise ValueError("image_pe must have batch size 1 (from get_dense_pe())")
        pos_src = torch.repeat_interleave(image_pe, batch, dim=0)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, first, :]
        mask_tokens_out = hs[:, first + 1 : first + 1 + self.num_mask_tokens, :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        if self.use_high_res_features:
            if high_res_features is None:
                raise ValueError("this decoder needs high_res_features")
            deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            upscaled = act1(norm1(deconv1(src) + feat_s1))
            upscaled = act2(deconv2(upscaled) + feat_s0)
        else:
            upscaled = self.output_upscaling(src)

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            obj_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            obj_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
        return masks, iou_pred, mask_tokens_out, obj_logits

    def _stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """IoU between the masks thresholded at +delta and -delta."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        inner = (flat > delta).sum(dim=-1).float()
        outer = (flat > -delta).sum(dim=-1).float()
        return torch.where(outer > 0, inner / outer, torch.ones_like(inner))

    def _dynamic_multimask_via_stability(
        self, all_mask_logits: torch.Tensor, all_iou_scores: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Keep the single mask when stable, else the multimask output with best IoU."""
        multi_logits = all_mask_logits[:, 1:]
        multi_ious = all_iou_scores[:, 1:]
        best = torch.argmax(multi_ious, dim=-1)
        rows = torch.arange(multi_ious.shape[0], device=all_iou_scores.device)
        best_logits = multi_logits[rows, best].unsqueeze(1)
        best_ious = multi_ious[rows, best].unsqueeze(1)

        single_logits = all_mask_logits[:, 0:1]
        single_ious = all_iou_scores[:, 0:1]
        stable = self._stability_scores(single_logits) >= self.dynamic_multimask_stability_thresh
        logits = torch.where(stable[..., None, None], single_logits, best_logits)
        ious = torch.where(stable, single_ious, best_ious)
        return logits, ious
