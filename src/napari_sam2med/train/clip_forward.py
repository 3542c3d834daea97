"""One training forward over a clip: prompts, corrections and memory, as SAM2 trains.

The forward reuses the inference code: :meth:`SAM2Model.track_step` for every prediction
and :class:`~napari_sam2med.engine.memory.SAM2MemoryPolicy` (or any memory policy, e.g. a
later SLM-SAM2 policy) to choose the memory each frame attends to. Nothing here runs under
``no_grad``; gradients flow through memory features and object pointers into earlier
frames unless ``detach_memory`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.memory import MemoryBank, MemoryEntry, MemoryPolicy, SAM2MemoryPolicy
from ..sam2.model import FrameFeatures, SAM2Model, TrackOutput
from .losses import LossTerms, LossWeights, step_loss, sum_terms
from .prompting import PromptKind, append_points, box_points, click_points, correction_points, pick_kind

__all__ = ["ClipPromptConfig", "ClipResult", "forward_clip"]


@dataclass(frozen=True)
class ClipPromptConfig:
    """How a training clip is prompted (SAM2's training defaults, scaled down for CPU).

    Parameters
    ----------
    p_mask, p_box, p_click : float
        Probabilities of the prompt kinds on a conditioning frame.
    p_second_cond : float
        Probability of a second conditioning frame (where every object is present).
    max_correction_frames : int
        Frames per clip that get correction clicks (drawn 0..max; the first
        conditioning frame first). A corrected tracked frame becomes a conditioning frame.
    max_correction_points : int
        Correction clicks per corrected frame (drawn 1..max), each one a decoder pass.
    box_noise : float
        Box corner noise as a fraction of the box side (at most 20 px).
    detach_memory : bool
        Cut gradients through memory (cheaper, shorter back-propagation).
    """

    p_mask: float = 0.2
    p_box: float = 0.5
    p_click: float = 0.3
    p_second_cond: float = 0.3
    max_correction_frames: int = 2
    max_correction_points: int = 3
    box_noise: float = 0.1
    detach_memory: bool = False

    @property
    def kind_probs(self) -> dict[PromptKind, float]:
        return {PromptKind.MASK: self.p_mask, PromptKind.BOX: self.p_box, PromptKind.CLICK: self.p_click}


@dataclass
class ClipResult:
    """Loss and final predictions of one clip."""

    loss: LossTerms
    logits: torch.Tensor  # (B, N, S/4, S/4) final low-res logits, detached
    cond_frames: list[int]
    n_steps: int


def _frame(feats: FrameFeatures, f: int, b: int) -> FrameFeatures:
    one = lambda t: t[f:f + 1]  # noqa: E731
    return FrameFeatures(one(feats.vision), one(feats.vision_pos),
                         (one(feats.high_res[0]), one(feats.high_res[1]))).expand(b)


def _loss(out: TrackOutput, target: torch.Tensor, weights: LossWeights) -> LossTerms:
    size = target.shape[-2:]
    multi = F.interpolate(out.multimask_logits.float(), size=size, mode="bilinear", align_corners=False)
    return step_loss(multi, out.ious, out.object_score_logits, target, weights)


def _present_in_all(masks: torch.Tensor) -> list[int]:
    """Frames where every object of the clip is present."""
    present = masks.flatten(2).amax(-1) > 0  # (B, N)
    return [int(f) for f in torch.nonzero(present.all(0)).flatten()]


def forward_clip(model: SAM2Model, images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator,
                 prompts: ClipPromptConfig = ClipPromptConfig(), weights: LossWeights = LossWeights(),
                 policy: MemoryPolicy | None = None) -> ClipResult:
    """Run SAM2's training forward on one clip and return the summed loss.

    Parameters
    ----------
    model : SAM2Model
        The network (train mode, any device).
    images : Tensor
        (N, 3, S, S) normalised frames in tracking order.
    masks : Tensor
        (B, N, S, S) ground truth of B objects; every object is present on frame 0.
    gen : torch.Generator
        CPU generator for every random choice (prompts, frames, clicks).
    prompts : ClipPromptConfig
        Prompting recipe.
    weights : LossWeights
        Loss weights.
    policy : MemoryPolicy, optional
        Memory selection (SAM2's by default).

    Returns
    -------
    ClipResult
    """
    policy = policy or SAM2MemoryPolicy()
    n, b = images.shape[0], masks.shape[0]
    if masks.shape[1] != n:
        raise ValueError(f"masks cover {masks.shape[1]} frames, images {n}")
    masks = masks.float()
    feats = model.encode_image(images)
    rand = lambda: float(torch.rand(1, generator=gen))  # noqa: E731
    randint = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))  # noqa: E731

    cond = [0]
    others = [f for f in _present_in_all(masks) if f != 0]
    if others and rand() < prompts.p_second_cond:
        cond.append(others[randint(0, len(others) - 1)])
    n_corr = randint(0, prompts.max_correction_frames)
    correct = set(cond[:n_corr])
    rest = [f for f in range(1, n) if f not in cond]
    while len(correct) < n_corr and rest:
        correct.add(rest.pop(randint(0, len(rest) - 1)))

    bank = MemoryBank()
    terms: list[LossTerms] = []
    logits = masks.new_zeros(b, n, model.image_size // 4, model.image_size // 4)
    order = sorted(cond) + [f for f in range(n) if f not in cond]
    for f in order:
        fr = _frame(feats, f, b)
        gt = masks[:, f:f + 1]
        is_cond = f in cond
        memory = None if is_cond else policy.select(f, bank, reverse=False, num_frames=n, config=model.config)
        points = None
        from_mask = False
        if is_cond:
            kind = pick_kind(prompts.kind_probs, gen)
            if kind is PromptKind.MASK:
                from_mask = True
                out = model.track_step(fr, memory=None, mask=gt, run_memory_encoder=False)
            else:
                points = box_points(gt, gen, prompts.box_noise) if kind is PromptKind.BOX else click_points(gt, gen)
                out = model.track_step(fr, memory=None, points=points, run_memory_encoder=False)
                terms.append(_loss(out, gt, weights))
        else:
            out = model.track_step(fr, memory=memory, run_memory_encoder=False)
            terms.append(_loss(out, gt, weights))
        if f in correct and not from_mask:
            for _ in range(randint(1, max(prompts.max_correction_points, 1))):
                click = correction_points(out.high_res_masks.detach(), gt, gen)
                points = append_points(points, click)
                prev = torch.clamp(out.low_res_masks.detach(), -32.0, 32.0)
                out = model.track_step(fr, memory=memory, points=points, prev_mask_logits=prev,
                                       run_memory_encoder=False)
                terms.append(_loss(out, gt, weights))
            is_cond = True  # a corrected frame becomes a conditioning frame
        mem = model.encode_memory(fr, out.high_res_masks, out.object_score_logits, from_points=False)
        ptr = out.obj_ptr
        if prompts.detach_memory:
            mem, ptr = mem.detach(), ptr.detach()
        entry = MemoryEntry(features=mem, obj_ptr=ptr, low_res_logits=out.low_res_masks,
                            score=out.object_score_logits)
        (bank.cond if is_cond else bank.recent)[f] = entry
        logits[:, f] = out.low_res_masks.detach()[:, 0]
    if not terms:  # only mask prompts on a one-frame clip: nothing to learn from
        zero = sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
        terms.append(LossTerms(zero, zero, zero, zero, zero))
    return ClipResult(loss=sum_terms(terms), logits=logits, cond_frames=sorted(cond), n_steps=len(terms))
