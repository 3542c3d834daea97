"""Prompts simulated from ground truth, as SAM2's training samples them.

Everything works on a batch of objects at model resolution: masks (B, 1, S, S) in {0, 1},
points in model pixel units ``(x, y)`` with SAM2's labels (1 positive, 0 negative, 2/3 box
corners). A :class:`torch.Generator` makes every draw reproducible.
"""

from __future__ import annotations

from enum import Enum

import torch

from ..sam2.model import PointInputs

__all__ = ["PromptKind", "box_points", "click_points", "correction_points", "append_points", "pick_kind"]


class PromptKind(str, Enum):
    """How a conditioning frame is prompted."""

    MASK = "mask"
    BOX = "box"
    CLICK = "click"


def pick_kind(probs: dict[PromptKind, float], gen: torch.Generator) -> PromptKind:
    """Draw a prompt kind with the given probabilities (normalised)."""
    kinds = [k for k, p in probs.items() if p > 0]
    if not kinds:
        raise ValueError("no prompt kind has a positive probability")
    w = torch.tensor([probs[k] for k in kinds], dtype=torch.float64)
    return kinds[int(torch.multinomial(w / w.sum(), 1, generator=gen))]


def _bbox(mask: torch.Tensor) -> torch.Tensor:
    """(B, 4) boxes x0, y0, x1, y1 (inclusive pixel indices) of (B, 1, H, W) masks; empty -> whole image."""
    b, _, h, w = mask.shape
    m = mask[:, 0] > 0
    rows, cols = m.any(-1), m.any(-2)
    idx_h = torch.arange(h, device=mask.device).expand(b, -1)
    idx_w = torch.arange(w, device=mask.device).expand(b, -1)
    big = torch.full_like(idx_h, h + w)
    y0 = torch.where(rows, idx_h, big).amin(-1)
    y1 = torch.where(rows, idx_h, -big).amax(-1)
    x0 = torch.where(cols, idx_w, big.new_full((b, w), h + w)).amin(-1)
    x1 = torch.where(cols, idx_w, big.new_full((b, w), -(h + w))).amax(-1)
    empty = ~rows.any(-1)
    box = torch.stack([x0, y0, x1, y1], -1).float()
    box[empty] = torch.tensor([0.0, 0.0, w - 1.0, h - 1.0], device=mask.device)
    return box


def box_points(mask: torch.Tensor, gen: torch.Generator, noise: float = 0.1, max_noise_px: float = 20.0) -> PointInputs:
    """A noised bounding box per object as two corner points (labels 2 and 3).

    Each coordinate is moved by a uniform offset of at most ``noise`` times the box side
    (capped at ``max_noise_px``), as SAM2's ``sample_box_points`` does.
    """
    b, _, h, w = mask.shape
    box = _bbox(mask)
    side = torch.stack([box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]] * 2, -1)
    amp = (side * noise).clamp(max=max_noise_px)
    jitter = (torch.rand(b, 4, generator=gen) * 2 - 1).to(mask.device) * amp
    box = box + jitter
    box[:, 0::2] = box[:, 0::2].clamp(0, w - 1)
    box[:, 1::2] = box[:, 1::2].clamp(0, h - 1)
    lo = torch.minimum(box[:, :2], box[:, 2:])
    hi = torch.maximum(box[:, :2], box[:, 2:])
    coords = torch.stack([lo, hi], 1)  # pixel indices, as SAM2's mask_to_box (the encoder adds 0.5)
    labels = torch.tensor([[2, 3]], dtype=torch.int32, device=mask.device).expand(b, -1).contiguous()
    return PointInputs(coords, labels)


def _sample_pixel(region: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniformly drawn pixel (x, y) per (H, W) region in a (B, H, W) batch; empty -> centre."""
    b, h, w = region.shape
    flat = region.flatten(1).float()
    count = flat.sum(-1)
    noise = torch.rand(flat.shape, generator=gen).to(region.device)
    idx = torch.argmax(noise * flat + (flat > 0) * 1.0, dim=-1)  # random pixel inside the region
    ys, xs = idx // w, idx % w
    ok = count > 0
    xs = torch.where(ok, xs, torch.full_like(xs, w // 2))
    ys = torch.where(ok, ys, torch.full_like(ys, h // 2))
    return torch.stack([xs, ys], -1).float(), ok


def click_points(mask: torch.Tensor, gen: torch.Generator) -> PointInputs:
    """One positive click per object, uniformly inside its mask (the centre when empty)."""
    xy, _ = _sample_pixel(mask[:, 0] > 0, gen)
    labels = torch.ones(mask.shape[0], 1, dtype=torch.int32, device=mask.device)
    return PointInputs(xy[:, None], labels)


def correction_points(pred_logits: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> PointInputs:
    """One correction click per object from its error region (SAM2's ``uniform`` method).

    A pixel is drawn uniformly from the false negatives and false positives of the current
    prediction; a missed pixel gives a positive click, a wrongly included one a negative.
    Objects without error get a positive click inside the ground truth.

    Parameters
    ----------
    pred_logits : Tensor
        (B, 1, S, S) current prediction (logits, detached by the caller).
    mask : Tensor
        (B, 1, S, S) ground truth.
    """
    pred = pred_logits[:, 0] > 0
    gt = mask[:, 0] > 0
    fn, fp = gt & ~pred, pred & ~gt
    xy, ok = _sample_pixel(fn | fp, gen)
    xi = xy[:, 0].long().clamp(0, gt.shape[-1] - 1)
    yi = xy[:, 1].long().clamp(0, gt.shape[-2] - 1)
    rows = torch.arange(gt.shape[0], device=gt.device)
    positive = fn[rows, yi, xi] | ~ok
    if not bool(ok.all()):  # no error: a positive click inside the object
        fallback = click_points(mask, gen)
        xy = torch.where(ok[:, None], xy, fallback.coords[:, 0])
    labels = positive.to(torch.int32)[:, None]
    return PointInputs(xy[:, None], labels)


def append_points(a: PointInputs | None, b: PointInputs) -> PointInputs:
    """Concatenate two point sets along the point axis."""
    if a is None:
        return b
    return PointInputs(torch.cat([a.coords, b.coords], 1), torch.cat([a.labels, b.labels], 1))
