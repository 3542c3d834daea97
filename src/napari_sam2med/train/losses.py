"""SAM2's training loss: focal + Dice + IoU-prediction L1 + object score, over correction steps.

The terms and their weights follow SAM2's ``MultiStepMultiMasksAndIous``:

* focal loss (alpha 0.25, gamma 2) x 20, Dice x 1, L1 between the predicted IoU and the
  IoU of the binarised mask x 1, binary cross-entropy of the object-score logit x 1;
* with several mask candidates, only the candidate with the lowest focal x 20 + Dice is
  back-propagated through the mask terms (the IoU head is supervised on that one too);
* the mask and IoU terms are zeroed for objects absent from the frame (the object score
  alone learns that they are absent);
* each term is summed over objects and divided by the number of objects, so a clip with
  many objects weighs as much as one with few.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["LossWeights", "focal_loss", "dice_loss", "iou_loss", "object_score_loss", "step_loss", "LossTerms"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four loss terms (SAM2's defaults)."""

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    obj_score: float = 1.0
    alpha: float = 0.25
    gamma: float = 2.0


@dataclass
class LossTerms:
    """Unweighted loss terms (per object, summed over steps) and their weighted total."""

    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    obj_score: torch.Tensor
    total: torch.Tensor
    parts: dict = field(default_factory=dict)

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("focal", "dice", "iou", "obj_score", "total")}


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask sigmoid focal loss, averaged over pixels.

    Parameters
    ----------
    logits, target : Tensor
        (B, M, H, W) logits and {0, 1} targets (broadcastable).

    Returns
    -------
    Tensor
        (B, M): the mean over pixels of ``alpha_t (1 - p_t)^gamma BCE``.
    """
    target = target.to(logits.dtype).expand_as(logits)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask soft Dice loss ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)``, shape (B, M)."""
    target = target.to(logits.dtype).expand_as(logits)
    prob = logits.sigmoid().flatten(2)
    t = target.flatten(2)
    num = 2 * (prob * t).sum(-1)
    den = prob.sum(-1) + t.sum(-1)
    return 1 - (num + 1) / (den + 1)


def iou_loss(logits: torch.Tensor, target: torch.Tensor, pred_iou: torch.Tensor) -> torch.Tensor:
    """Per-mask L1 between the predicted IoU and the IoU of ``logits > 0`` with ``target``, (B, M).

    An empty prediction of an empty target counts as IoU 1 (as SAM2 does, via ``clamp(min=1)``
    of the union).
    """
    pred = (logits > 0).flatten(2).float()
    t = (target > 0).expand_as(logits).flatten(2).float()
    inter = (pred * t).sum(-1)
    union = pred.sum(-1) + t.sum(-1) - inter
    actual = inter / union.clamp(min=1.0)
    return (pred_iou.float() - actual).abs()


def object_score_loss(score_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the object-score logit (B, 1) against presence (B,) -> (B,)."""
    return F.binary_cross_entropy_with_logits(score_logits.float().reshape(-1), present.float().reshape(-1),
                                              reduction="none")


def step_loss(multimask_logits: torch.Tensor, ious: torch.Tensor, score_logits: torch.Tensor,
              target: torch.Tensor, weights: LossWeights = LossWeights()) -> LossTerms:
    """Loss of one prediction step for a batch of objects.

    Parameters
    ----------
    multimask_logits : Tensor
        (B, M, H, W) mask logits at the target's resolution (M = 1 or 3 candidates).
    ious : Tensor
        (B, M) predicted IoUs.
    score_logits : Tensor
        (B, 1) object-score logits.
    target : Tensor
        (B, 1, H, W) ground-truth masks ({0, 1}).
    weights : LossWeights
        Term weights.

    Returns
    -------
    LossTerms
        Each term summed over objects and divided by the number of objects.
    """
    b = target.shape[0]
    target = target.float()
    present = target.flatten(1).amax(-1) > 0  # (B,)
    focal = focal_loss(multimask_logits, target, weights.alpha, weights.gamma)
    dice = dice_loss(multimask_logits, target)
    iou = iou_loss(multimask_logits, target, ious)
    if multimask_logits.shape[1] > 1:
        # Only the best candidate (lowest combined mask loss) is back-propagated.
        best = torch.argmin(focal * weights.focal + dice * weights.dice, dim=-1)
        rows = torch.arange(b, device=target.device)
        focal, dice, iou = focal[rows, best], dice[rows, best], iou[rows, best]
    else:
        focal, dice, iou = focal[:, 0], dice[:, 0], iou[:, 0]
    keep = present.float()  # mask terms only where the object is present
    n = max(b, 1)
    focal = (focal * keep).sum() / n
    dice = (dice * keep).sum() / n
    iou = (iou * keep).sum() / n
    obj = object_score_loss(score_logits, present).sum() / n
    total = weights.focal * focal + weights.dice * dice + weights.iou * iou + weights.obj_score * obj
    return LossTerms(focal=focal, dice=dice, iou=iou, obj_score=obj, total=total)


def sum_terms(terms: list[LossTerms]) -> LossTerms:
    """Add the terms of several steps / frames (SAM2 sums the losses of all steps)."""
    if not terms:
        raise ValueError("no loss terms to add")
    out = LossTerms(*(sum(getattr(t, k) for t in terms) for k in ("focal", "dice", "iou", "obj_score", "total")))
    return out
