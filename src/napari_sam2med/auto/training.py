"""Train an AutoSAM2 prompt encoder against a FROZEN SAM2 (a generator; drive it with ``engine.run_to_end``).

Only :class:`~.prompt_net.PromptNet` learns. SAM2's parameters get ``requires_grad_(False)``;
its image encoder runs under ``no_grad`` (features are cached per image and flip/rotation), and
gradients reach the prompt network through SAM2's own mask decoder only (:func:`.auto_decode`).
The SAM2 weights are fingerprinted before and after training; a change is an error.

Loss: Dice + binary cross-entropy on the low-resolution mask logits, plus a small BCE term on
SAM2's object-score head (object present iff the label is non-empty).

Crop mode (``crop_context > 0``; see :mod:`.predict`): every step draws fresh augmented windows
around the object (:mod:`.sampling`), runs the frozen image encoder on them (cheap for small SAM2s
such as ``sam2med-small-ct``; nothing is cached) and trains the prompts through SAM2's decoder (loss
at SAM2's input resolution), the auxiliary head on the same windows and, for locating, on
``locate_batch`` whole-slice views at ``locate_size``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Generator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..sam2.model import FrameFeatures, SAM2Model
from .channels import inputs, prepare
from .prompt_net import PromptNet, PromptNetConfig, auto_decode, sam2_fingerprint

__all__ = ["AutoTrainConfig", "AutoTrainStep", "AutoTrainResult", "train_prompt_net", "new_prompt_net",
           "dice_bce_loss"]

log = logging.getLogger(__name__)


@dataclass
class AutoTrainConfig:
    """Recipe of a prompt-encoder training.

    Parameters
    ----------
    steps, batch_size, lr, weight_decay : training length and AdamW settings.
    dice_weight, bce_weight, score_weight : loss weights.
    augment : bool
        Random flips / 90-degree rotations (SAM2 features are cached per variant) and a gamma /
        contrast jitter of the prompt network's own input.
    warp : bool
        Crop mode: also warp each sample about the object (any-angle rotation, scale, stretch,
        elastic; ``sampling.warp``).
    input_size, width, sparse_tokens : PromptNet architecture (see :class:`.PromptNetConfig`).
    crop_context : float
        0: whole-slice mode. Otherwise crop mode; the context SAM2's window gets at inference
        (training draws it from ``context_range``, centre jittered by ``jitter`` of the side).
    locate_size, locate_batch, aux_weight, refine, tta, relocate : crop mode: the locating input side,
        whole-slice views per step, weight of the auxiliary-head loss; window re-centrings,
        flips / rotations averaged and the second-pass locator's zoom at inference.
    input_channels : tuple of str
        Named channels of the prompt encoder's input (``PromptNetConfig.input_channels``; empty:
        SAM2's own input). Images are then (Y, X, C) stacks in that order; SAM2 sees channel 0.
    stretch : bool
        Named channels: percentile-stretch the channels after the first (``PromptNetConfig.stretch``).
    seed : int
        Seeds the network initialisation and the sampling.
    checkpoint : path, optional
        Where to save a resumable state every ``checkpoint_every`` steps (and at the end);
        training resumes from it when it exists.
    """

    steps: int = 200
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    score_weight: float = 0.1
    augment: bool = True
    warp: bool = False
    input_size: int = 128
    width: int = 16
    sparse_tokens: int = 2
    crop_context: float = 0.0
    context_range: tuple[float, float] = (1.8, 3.0)
    jitter: float = 0.12
    locate_size: int = 256
    locate_batch: int = 1
    aux_weight: float = 0.5
    refine: int = 1
    tta: int = 1
    relocate: float = 0.0
    input_channels: tuple[str, ...] = ()
    stretch: bool = False
    seed: int = 0
    checkpoint: str | None = None
    checkpoint_every: int = 50


@dataclass
class AutoTrainStep:
    """Progress of one optimisation step."""

    step: int
    total: int
    loss: float
    dice: float


@dataclass
class AutoTrainResult:
    """The trained network and its loss history."""

    net: PromptNet
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
                  bce_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft Dice + BCE of mask logits against a {0, 1} target; returns ``(loss, hard dice)``."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).flatten(1).sum(1)
    denom = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
    soft_dice = 1 - (2 * inter + 1) / (denom + 1)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    with torch.no_grad():
        hard = (logits > 0).float()
        hd = (2 * (hard * target).flatten(1).sum(1) + 1e-6) / (hard.flatten(1).sum(1) + target.flatten(1).sum(1) + 1e-6)
    return dice_weight * soft_dice.mean() + bce_weight * bce, hd.mean()


def _variant(a: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th (0..7) dihedral variant of a (Y, X[, C]) array."""
    a = np.rot90(a, k % 4, axes=(0, 1))
    return np.ascontiguousarray(a[:, ::-1] if k >= 4 else a)


class _FeatureStore:
    """Frozen-SAM2 features and low-res targets per (sample, variant), computed once."""

    def __init__(self, model: SAM2Model, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                 channels: tuple[str, ...] = ()):
        self.model, self.images, self.masks, self.channels = model, images, masks, tuple(channels)
        self.cache: dict[tuple[int, int], tuple[torch.Tensor, FrameFeatures, torch.Tensor]] = {}

    def get(self, i: int, k: int):
        if (i, k) not in self.cache:
            m = self.model
            s = m.image_size
            xs, x = inputs([_variant(self.images[i], k)], s, self.channels, m.device)
            with torch.no_grad():
                f = m.encode_image(xs)
            y = torch.from_numpy(_variant(self.masks[i].astype(np.float32), k))[None, None].to(m.device)
            y = (F.interpolate(y, size=(s // 4, s // 4), mode="area") >= 0.5).float()
            self.cache[(i, k)] = (x, f, y)
        return self.cache[(i, k)]


def _cat(feats: list[FrameFeatures]) -> FrameFeatures:
    return FrameFeatures(torch.cat([f.vision for f in feats]), torch.cat([f.vision_pos for f in feats]),
                         (torch.cat([f.high_res[0] for f in feats]), torch.cat([f.high_res[1] for f in feats])))


def _jitter(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Contrast / brightness jitter of the prompt network's input (SAM2 sees the original)."""
    return x * float(rng.uniform(0.8, 1.25)) + float(rng.uniform(-0.2, 0.2))


def new_prompt_net(model: SAM2Model, config: AutoTrainConfig) -> PromptNet:
    """An untrained prompt encoder for ``model`` with the architecture of ``config``."""
    return PromptNet(PromptNetConfig.for_model(
        model, input_size=config.input_size, width=config.width, sparse_tokens=config.sparse_tokens,
        aux=config.crop_context > 0, crop_context=config.crop_context, locate_size=config.locate_size,
        refine=config.refine, tta=config.tta, relocate=config.relocate, input_channels=tuple(config.input_channels),
        stretch=config.stretch))


def train_prompt_net(model: SAM2Model, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                     config: AutoTrainConfig = AutoTrainConfig(), net: PromptNet | None = None,
                     ) -> Generator[AutoTrainStep, None, AutoTrainResult]:
    """Train a prompt encoder so that frozen SAM2 segments ``masks`` from ``images`` without clicks.

    Parameters
    ----------
    model : SAM2Model
        Frozen SAM2 (left exactly as it was; checked).
    images : sequence of ndarray
        (Y, X) or (Y, X, 3) slices scaled to [0, 1].
    masks : sequence of ndarray
        Matching bool (Y, X) labels of the one object to find.
    config : AutoTrainConfig
        The recipe.
    net : PromptNet, optional
        Start from this network (default: a new one for ``model``).

    Yields
    ------
    AutoTrainStep
        One per step.

    Returns
    -------
    AutoTrainResult
    """
    if len(images) == 0 or len(images) != len(masks):
        raise ValueError("need the same, non-zero number of images and masks")
    images = [prepare(im, tuple(config.input_channels), config.stretch) for im in images]
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    crop = config.crop_context > 0
    net = net or new_prompt_net(model, config)
    if crop and net.aux_head is None:
        raise ValueError("crop mode needs a prompt encoder with an auxiliary head (PromptNetConfig.aux)")
    dev = model.device
    net = net.to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(config.steps, 2),
                                                pct_start=0.1)
    start, history = 0, []
    ckpt = Path(config.checkpoint) if config.checkpoint else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        net.load_state_dict(state["net"], strict=True)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, history = int(state["step"]), list(state["history"])
        log.info("resumed %s at step %d", ckpt, start)

    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.requires_grad_(False)
    model.eval()
    before = sam2_fingerprint(model)
    store = None if crop else _FeatureStore(model, images, masks, tuple(config.input_channels))
    objects = [i for i, m in enumerate(masks) if np.any(m)]
    if crop and not objects:
        raise ValueError("crop mode needs at least one non-empty mask")
    t0 = time.perf_counter()
    try:
        for step in range(start, config.steps):
            if crop:
                loss, hard = _crop_loss(model, net, images, masks, objects, config, rng)
            else:
                loss, hard = _whole_loss(model, net, store, len(images), config, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            history.append({"step": step + 1, "loss": float(loss.detach()), "dice": float(hard)})
            if ckpt is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
                _save_state(ckpt, net, opt, sched, step + 1, history)
            yield AutoTrainStep(step + 1, config.steps, float(loss.detach()), float(hard))
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)
    if sam2_fingerprint(model) != before:
        raise RuntimeError("SAM2 parameters changed during prompt-encoder training (they must stay frozen)")
    return AutoTrainResult(net=net.eval(), history=history, seconds=time.perf_counter() - t0)


def _whole_loss(model, net, store, n: int, config: AutoTrainConfig, rng: np.random.Generator):
    idx = rng.integers(0, n, size=config.batch_size)
    var = rng.integers(0, 8 if config.augment else 1, size=config.batch_size)
    items = [store.get(int(i), int(k)) for i, k in zip(idx, var)]
    x = torch.cat([it[0] for it in items])
    if config.augment:
        x = _jitter(x, rng)
    y = torch.cat([it[2] for it in items])
    sparse, dense = net(x)
    logits, score = auto_decode(model, _cat([it[1] for it in items]), sparse, dense, gate=False)
    loss, hard = dice_bce_loss(logits, y, config.dice_weight, config.bce_weight)
    present = (y.flatten(1).amax(1, keepdim=True) > 0).float()
    return loss + config.score_weight * F.binary_cross_entropy_with_logits(score, present), hard


def _to_batch(pairs, size: int, device, channels: tuple[str, ...] = ()):
    """``(SAM2 input, prompt-encoder input, {0, 1} targets)``, all resized to ``size`` (the two inputs
    are one tensor without named channels)."""
    x, xn = inputs([im for im, _ in pairs], size, channels, device)
    y = torch.cat([F.interpolate(torch.from_numpy(m.astype(np.float32))[None, None], size=(size, size), mode="area")
                   for _, m in pairs]).to(device)
    return x, xn, (y >= 0.5).float()


def _up(logits: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)


def _crop_loss(model, net, images, masks, objects: list[int], config: AutoTrainConfig, rng: np.random.Generator):
    from .sampling import Augment, augment, crop_sample, jitter, locate_sample

    aug = Augment(warp=config.warp) if config.augment else None
    s = model.image_size
    crops = []
    for i in rng.choice(objects, size=config.batch_size):
        img, m = augment(images[int(i)], masks[int(i)], rng, aug)
        img, m = crop_sample(img, m, rng, config.context_range, config.jitter if config.augment else 0.0)
        crops.append((jitter(img, rng, aug), m))
    chans = tuple(config.input_channels)
    x, xn, y = _to_batch(crops, s, model.device, chans)
    with torch.no_grad():
        feats = model.encode_image(x)
    sparse, dense, aux = net.forward_all(xn)
    logits, score = auto_decode(model, feats, sparse, dense, gate=False)
    loss, hard = dice_bce_loss(_up(logits, s), y, config.dice_weight, config.bce_weight)
    loss = loss + config.score_weight * F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
    loss = loss + config.aux_weight * dice_bce_loss(_up(aux, s), y)[0]
    if config.locate_batch > 0:
        views = []
        for i in rng.integers(0, len(images), size=config.locate_batch):
            img, m = augment(images[int(i)], masks[int(i)], rng, aug)
            img, m = locate_sample(img, m, rng) if config.augment else (img, m)
            views.append((jitter(img, rng, aug), m))
        _, xl, yl = _to_batch(views, config.locate_size, model.device, chans)
        loss = loss + config.aux_weight * dice_bce_loss(_up(net.aux_logits(xl, config.locate_size), config.locate_size),
                                                        yl)[0]
    return loss, hard


def _save_state(path: Path, net, opt, sched, step: int, history: list[dict]) -> None:
    from ..io.writers import atomic_write

    state = {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
             "history": history}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def config_record(config: AutoTrainConfig) -> dict:
    """Plain-data record of a recipe (for the saved file and the model card)."""
    return {k: v for k, v in asdict(config).items() if k not in ("checkpoint",)}
