"""One slice, no clicks: a prompt encoder + frozen SAM2, on the whole slice or in a located window.

* Whole-slice mode (``net.config.crop_context == 0``): SAM2 and the prompt encoder see the slice
  resized to SAM2's input.
* Crop mode (``crop_context > 0``, for SAM2s trained on crops such as ``sam2med-small-ct``): the
  prompt encoder's auxiliary head looks at the whole slice (at ``locate_size``) and its most
  confident component gives a box; SAM2 is prompted in the square window ``crop_context`` times
  the box's longer side around it (``engine.crop.window_from_box``, the rule the engine uses for
  clicks); with ``refine`` the window is re-centred on SAM2's mask and SAM2 run again. The mask is
  pasted back into the slice.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.crop import MIN_SIDE, cut, paste, window_from_box
from ..sam2.device import autocast_context
from ..sam2.model import SAM2Model
from .channels import inputs, net_tensor, prepare
from .prompt_net import PromptEnsemble, PromptNet, auto_decode, members

__all__ = ["predict_mask", "locate_box", "mask_box", "window_logits"]


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(row0, col0, row1, col1)`` bounding box of a boolean mask (None when empty)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _best_component(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    """The connected component of ``prob > threshold`` with the largest summed probability."""
    from scipy import ndimage

    labels, n = ndimage.label(prob > threshold)
    if n == 0:
        return None
    sums = ndimage.sum(prob, labels, index=np.arange(1, n + 1))
    return labels == int(np.argmax(sums)) + 1


def locate_box(net: PromptNet | PromptEnsemble, frame01: np.ndarray, device="cpu",
               window: tuple[int, int, int] | None = None) -> tuple[int, int, int, int] | None:
    """Where the prompt encoder's auxiliary head sees the object on a whole slice (its probabilities
    averaged over ``net.config.tta`` flips / rotations and an ensemble's members).

    With ``window`` (``(row0, col0, side)``) the head looks only at that square part of the slice, at
    the network's ``input_size`` (the zoomed second pass of ``PromptNetConfig.relocate``).

    Returns
    -------
    tuple or None
        ``(row0, col0, row1, col1)`` in slice pixels of its most confident component, or None
        when nothing passes probability 0.5.
    """
    r0, c0 = (0, 0) if window is None else window[:2]
    frame01 = frame01 if window is None else cut(frame01, window, axes=(0, 1))
    h, w = frame01.shape[:2]
    s = net.config.locate_size if window is None else net.config.input_size
    x = net_tensor(frame01, s, net.config.input_channels, device)
    ks = list(range(max(1, min(int(net.config.tta), 8))))
    xs, probs = torch.cat([_dihedral(x, k) for k in ks]), []
    with torch.inference_mode():
        for member in members(net):
            logits = member.aux_logits(xs, s).float()
            probs += [_dihedral(torch.sigmoid(logits[i:i + 1]), k, inverse=True)[0, 0] for i, k in enumerate(ks)]
        prob = torch.stack(probs).mean(0)
        prob = F.interpolate(prob[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    comp = _best_component(prob.cpu().numpy())
    if comp is None:
        return None
    b = mask_box(comp)
    return b[0] + r0, b[1] + c0, b[2] + r0, b[3] + c0


def _dihedral(t: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """The ``k``-th (0..7) flip / rotation of (B, C, S, S) tensors (as ``sampling.dihedral``), or its inverse."""
    if not inverse:
        t = torch.rot90(t, k % 4, dims=(2, 3))
        return t.flip(3) if k >= 4 else t
    t = t.flip(3) if k >= 4 else t
    return torch.rot90(t, -(k % 4), dims=(2, 3))


def window_logits(model: SAM2Model, net: PromptNet | PromptEnsemble, frame01: np.ndarray,
                  window: tuple[int, int, int]) -> tuple[torch.Tensor, float]:
    """SAM2's mask logits ``(side, side)`` in a window (mean over ``net.config.tta`` flips / rotations
    and an ensemble's members) and the mean object-score logit."""
    x, xn = inputs([cut(frame01, window, axes=(0, 1))], model.image_size, net.config.input_channels, model.device)
    ks = list(range(max(1, min(int(net.config.tta), 8))))
    xs = torch.cat([_dihedral(x, k) for k in ks])
    xn = xs if xn is x else torch.cat([_dihedral(xn, k) for k in ks])
    with torch.inference_mode(), autocast_context(model.device):
        feats = model.encode_image(xs)
        lows, scores = [], []
        for member in members(net):
            sparse, dense = member(xn)
            low, score = auto_decode(model, feats, sparse, dense, gate=False)
            lows += [_dihedral(low[i:i + 1].float(), k, inverse=True)[0, 0] for i, k in enumerate(ks)]
            scores.append(score.float())
        low, score = torch.stack(lows).mean(0), torch.cat(scores)
    side = window[2]
    up = F.interpolate(low[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    return up, float(score.float().mean())


def _sam2_in_window(model: SAM2Model, net: PromptNet | PromptEnsemble, frame01: np.ndarray,
                    window: tuple[int, int, int]) -> tuple[np.ndarray, float]:
    up, score = window_logits(model, net, frame01, window)
    mask = (up > 0).cpu().numpy() if score > 0 else np.zeros(up.shape, bool)
    return paste(mask, window, frame01.shape[:2]), score


def predict_mask(model: SAM2Model, net: PromptNet | PromptEnsemble, frame01: np.ndarray) -> tuple[np.ndarray, float]:
    """Auto-segment one slice (see the module docstring for the two modes).

    Parameters
    ----------
    model : SAM2Model
        The frozen SAM2 the prompt encoder was trained against.
    net : PromptNet or PromptEnsemble
        The prompt encoder (an ensemble averages its members' logits).
    frame01 : ndarray
        (Y, X) or (Y, X, 3) slice scaled to [0, 1]; (Y, X, C) with the encoder's named
        ``input_channels`` (SAM2 sees the first).

    Returns
    -------
    (mask, score) : (ndarray, float)
        bool (Y, X) mask (empty when nothing is found or SAM2's object-score head says "absent")
        and that score logit (-inf when crop mode located nothing).
    """
    frame01 = prepare(frame01, net.config.input_channels, net.config.stretch)
    shape = frame01.shape[:2]
    context = float(net.config.crop_context)
    if context <= 0:
        return _whole(model, net, frame01)
    box = locate_box(net, frame01, model.device)
    if box is not None and float(net.config.relocate) > 0:  # second pass in a zoomed crop around the first box
        zoom = window_from_box(box, float(net.config.relocate), MIN_SIDE, shape)
        box = locate_box(net, frame01, model.device, window=zoom) or box
    if box is None:
        return np.zeros(shape, bool), float("-inf")
    mask, score = np.zeros(shape, bool), float("-inf")
    for _ in range(1 + max(int(net.config.refine), 0)):
        mask, score = _sam2_in_window(model, net, frame01, window_from_box(box, context, MIN_SIDE, shape))
        box = mask_box(mask)
        if box is None:
            break
    return mask, score


def _whole(model: SAM2Model, net: PromptNet | PromptEnsemble, frame01: np.ndarray) -> tuple[np.ndarray, float]:
    """Whole-slice mode: the slice resized to SAM2's square input."""
    x, xn = inputs([frame01], model.image_size, net.config.input_channels, model.device)
    with torch.inference_mode(), autocast_context(model.device):
        feats = model.encode_image(x)
        outs = [auto_decode(model, feats, *member(xn), gate=False) for member in members(net)]
        low = torch.stack([o[0].float() for o in outs]).mean(0)
        score = float(torch.stack([o[1].float() for o in outs]).mean())
    up = F.interpolate(low, size=frame01.shape[:2], mode="bilinear", align_corners=False)
    return (up[0, 0] > 0).cpu().numpy() if score > 0 else np.zeros(frame01.shape[:2], bool), score
