"""Adapt SAM2Flow to one user video without labels (self-supervised test-time fine-tuning).

Loss, inside the ROI of the user's prompts (the model's own ROI on the first pair, dilated):

* photometric: soft census transform (7x7) of frame ``t`` against frame ``t+1`` warped by
  the predicted flow, robust (generalised Charbonnier), with occlusion masking by
  forward-backward consistency (UnFlow) and with pixels warped out of the frame ignored;
* edge-aware first-order smoothness of the flow, weighted by ``exp(-edge * |grad I|)``.

Crops around the ROI of 3-frame clips (2 pairs, so the memory is written and read) are
drawn from the whole video. Only the flow path is trained (the prompt encoder and the ROI
decoder are frozen), with a small learning rate: adaptation should fit the video's
texture and noise, not forget what the synthetic training taught.

:func:`adapt_flow` is a generator yielding :class:`AdaptProgress` (step, loss) and
returning :class:`AdaptResult`; the CLI (``sam2med flow-adapt``) and the Flow dock's
"Adapt to this video" panel drive it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from .estimators.sam2flow import SAM2FlowEstimator, prompts_to_tensors
from .net.model import SAM2Flow
from .runner import FrameNormalizer, _read_frame, validate_rois, video_shape
from .types import RoiPrompt

__all__ = ["AdaptConfig", "AdaptProgress", "AdaptResult", "adapt_flow", "census_loss", "smoothness_loss", "warp"]


@dataclass
class AdaptConfig:
    """Knobs of :func:`adapt_flow`."""

    steps: int = 100
    lr: float = 2e-5
    batch: int = 2
    crop: int = 64
    iters: int = 4
    smooth_weight: float = 0.5
    edge: float = 10.0
    roi_dilation: int = 4
    seed: int = 0


@dataclass
class AdaptProgress:
    """One optimisation step: its index (1-based), the total and the loss."""

    step: int
    total: int
    loss: float


@dataclass
class AdaptResult:
    """Adapted model (eval mode) and the loss curve."""

    model: SAM2Flow
    losses: list = field(default_factory=list)


def warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` (B, C, H, W) at ``p + flow(p)``; also return the in-frame mask (B, 1, H, W)."""
    b, _, h, w = image.shape
    rows, cols = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    r, c = rows + flow[:, 0], cols + flow[:, 1]
    grid = torch.stack([2 * c / max(w - 1, 1) - 1, 2 * r / max(h - 1, 1) - 1], dim=-1)
    inside = ((r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)).to(image.dtype)[:, None]
    return F.grid_sample(image, grid, align_corners=True, padding_mode="border"), inside


def _census(image: torch.Tensor, size: int = 7) -> torch.Tensor:
    patches = F.unfold(image, size, padding=size // 2).view(image.shape[0], size * size, *image.shape[-2:])
    diff = patches - image
    return diff / torch.sqrt(0.81 + diff**2)  # soft census signature


def census_loss(frame0: torch.Tensor, warped1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Robust soft-census distance between ``frame0`` and the warped next frame inside ``mask``."""
    c0, c1 = _census(frame0), _census(warped1)
    dist = ((c0 - c1) ** 2 / (0.1 + (c0 - c1) ** 2)).mean(1, keepdim=True)
    robust = (dist + 1e-2) ** 0.45
    return (robust * mask).sum() / mask.sum().clamp(min=1.0)


def smoothness_loss(flow: torch.Tensor, image: torch.Tensor, mask: torch.Tensor, edge: float = 10.0) -> torch.Tensor:
    """Edge-aware first-order smoothness of ``flow`` (B, 2, H, W) inside ``mask`` (B, 1, H, W)."""
    loss = flow.new_zeros(())
    for dim in (2, 3):
        d_flow = flow.diff(dim=dim).abs().sum(1, keepdim=True)
        weight = torch.exp(-edge * image.diff(dim=dim).abs())
        m = mask.narrow(dim, 0, mask.shape[dim] - 1)
        loss = loss + (d_flow * weight * m).sum() / m.sum().clamp(min=1.0)
    return loss


def _occlusion_free(fwd: torch.Tensor, bwd: torch.Tensor) -> torch.Tensor:
    bwd_at = warp(bwd, fwd)[0]
    mismatch = ((fwd + bwd_at) ** 2).sum(1, keepdim=True)
    bound = 0.01 * ((fwd**2).sum(1, keepdim=True) + (bwd_at**2).sum(1, keepdim=True)) + 0.5
    return (mismatch < bound).to(fwd.dtype)


def _roi_mask(model: SAM2Flow, frames: Sequence[np.ndarray], rois: Sequence[RoiPrompt], dilation: int) -> np.ndarray:
    """Union of the model's ROIs on the first pair, dilated; disks around positive points as a floor."""
    est = SAM2FlowEstimator(model)
    est.reset(frames[0], rois)
    mask = est.step(frames[1]).roi_ids > 0
    for roi in rois:
        for (r, c), lab in zip(np.asarray(roi.points), np.asarray(roi.labels)):
            if lab == 1:
                mask[int(round(r)), int(round(c))] = True
    return ndi.binary_dilation(mask, iterations=max(dilation, 1))


def _crop_origins(mask: np.ndarray, crop: int) -> np.ndarray:
    h, w = mask.shape
    pts = np.argwhere(mask)
    r0 = np.clip(pts[:, 0] - crop // 2, 0, max(h - crop, 0))
    c0 = np.clip(pts[:, 1] - crop // 2, 0, max(w - crop, 0))
    return np.unique(np.stack([r0, c0], 1), axis=0)


def adapt_flow(
    video: Any,
    rois: Sequence[RoiPrompt],
    model: SAM2Flow,
    cfg: AdaptConfig | None = None,
) -> Generator[AdaptProgress, None, AdaptResult]:
    """Fine-tune ``model`` on ``video`` with the self-supervised loss (see module docstring).

    Parameters
    ----------
    video : array-like
        ``(T, H, W)`` video (numpy, zarr, dask or FrameStack-like), at least 3 frames.
    rois : sequence of RoiPrompt
        Vessel prompts in frame 0 (as for ``sam2med flow``).
    model : SAM2Flow
        Model to adapt (modified in place; pass a copy to keep the original).
    cfg : AdaptConfig, optional
        Steps, learning rate, crop size and loss weights.

    Yields
    ------
    AdaptProgress
        After every optimisation step, with the loss.

    Returns
    -------
    AdaptResult
        The adapted model (eval mode) and the loss of every step.
    """
    cfg = cfg or AdaptConfig()
    n, h, w = video_shape(video)
    if n < 3:
        raise ValueError(f"adaptation needs at least 3 frames, got {n}")
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    rois = list(rois)
    validate_rois(rois, (h, w))
    normalize = FrameNormalizer.from_video(video)
    frames = np.stack([normalize(_read_frame(video, t)) for t in range(n)])  # float32; videos to adapt on are small
    crop = min(cfg.crop, (min(h, w) // model.stride) * model.stride)
    if crop < model.stride:
        raise ValueError(f"frames must be at least {model.stride}x{model.stride} px to adapt, got {h}x{w}")
    model.eval()
    roi_mask = _roi_mask(model, frames, rois, cfg.roi_dilation)
    origins = _crop_origins(roi_mask, crop)
    rng = np.random.default_rng(cfg.seed)
    device = next(model.parameters()).device
    frozen = ("prompt_encoder.", "roi_decoder.")
    params = [p for name, p in model.named_parameters() if not name.startswith(frozen)]
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(frozen))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    points, labels = prompts_to_tensors(rois)
    losses = []
    model.train()
    try:
        for step in range(1, cfg.steps + 1):
            clips, masks, pts = [], [], []
            for _ in range(cfg.batch):
                r0, c0 = origins[rng.integers(len(origins))]
                t0 = int(rng.integers(0, n - 2))
                win = (slice(r0, r0 + crop), slice(c0, c0 + crop))
                clips.append(frames[t0 : t0 + 3][(slice(None),) + win])
                masks.append(roi_mask[win])
                pts.append(points[0] - torch.tensor([float(r0), float(c0)]))
            clip = torch.from_numpy(np.stack(clips))[:, :, None].to(device)  # (B, 3, 1, S, S)
            mask = torch.from_numpy(np.stack(masks))[:, None].float().to(device)
            p = torch.stack(pts).to(device)
            lab = labels.expand(cfg.batch, -1, -1).to(device)
            fwd = model(clip, p, lab, iters=cfg.iters)
            bwd = model(clip.flip(1), p, lab, iters=cfg.iters)
            loss = clip.new_zeros(())
            for k in range(2):  # pair k: frames k -> k+1; the backward clip holds it as pair 1-k reversed
                f, b = fwd[k].flows[-1], bwd[1 - k].flows[-1]
                im0, im1 = clip[:, k], clip[:, k + 1]
                warped, inside = warp(im1, f)
                valid = mask * inside * _occlusion_free(f.detach(), b.detach())
                loss = loss + census_loss(im0, warped, valid) + cfg.smooth_weight * smoothness_loss(f, im0, mask, cfg.edge)
            loss = loss / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            yield AdaptProgress(step=step, total=cfg.steps, loss=losses[-1])
    finally:
        for p_ in model.parameters():
            p_.requires_grad_(True)
        model.eval()
    return AdaptResult(model=model, losses=losses)
