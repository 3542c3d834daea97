"""Multi-channel input of a prompt encoder (``PromptNetConfig.input_channels``).

By default (``input_channels == ()``) the prompt encoder sees exactly SAM2's input: the slice as
SAM2's normalised 3-channel tensor. With named channels, e.g. ``("OCTA(ILM_OPL)", "OCTA(FULL)",
"OCTA(OPL_BM)")`` (several en-face projections of one OCTA scan), a slice is a ``(Y, X, C)`` stack
of those images in [0, 1], in that order; the prompt encoder sees all ``C`` channels and SAM2 sees
the first one only (as a grey slice), so SAM2's own input does not change.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.preprocess import frame_to_tensor

__all__ = ["n_inputs", "check_frame", "prepare", "sam2_view", "net_tensor", "inputs", "check_channels",
           "check_stack"]

MEAN, STD = 0.45, 0.25  # fixed per-channel normalisation of named channels (about ImageNet's grey)


def n_inputs(channels: tuple[str, ...]) -> int:
    """Input channels of the prompt encoder's first layer (3 for SAM2's own input)."""
    return len(channels) or 3


def check_frame(frame01: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
    """``frame01`` as float32, checked against the channel spec (one-line ``ValueError`` otherwise)."""
    a = np.asarray(frame01, dtype=np.float32)
    if not channels:
        if a.ndim not in (2, 3):
            raise ValueError(f"expected a (Y, X) or (Y, X, 3) slice, got shape {a.shape}")
        return a
    if a.ndim != 3 or a.shape[-1] != len(channels):
        raise ValueError(f"this prompt encoder needs (Y, X, {len(channels)}) slices with the channels "
                         f"{', '.join(channels)} (in that order), got shape {a.shape}")
    return a


def prepare(frame01: np.ndarray, channels: tuple[str, ...], stretch: bool = False) -> np.ndarray:
    """A slice checked against the channel spec (:func:`check_frame`); with ``stretch`` every named
    channel after the first (the prompt encoder's extra views, not SAM2's) is mapped from its 1st-99th
    percentile on this slice to [0, 1] (for views whose brightness varies from scan to scan)."""
    a = check_frame(frame01, channels)
    if not (stretch and len(channels) > 1):
        return a
    a = a.copy()
    for k in range(1, a.shape[-1]):
        lo, hi = np.percentile(a[..., k], (1, 99))
        a[..., k] = np.clip((a[..., k] - lo) / max(hi - lo, 1e-6), 0, 1)
    return a


def sam2_view(frame01: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
    """What SAM2 sees of a slice: itself by default, else its first channel."""
    return frame01[..., 0] if channels else frame01


def net_tensor(frame01: np.ndarray, size: int, channels: tuple[str, ...], device="cpu") -> torch.Tensor:
    """The prompt encoder's input ``(1, C, size, size)`` of one slice.

    Parameters
    ----------
    frame01 : ndarray
        A slice in [0, 1]: (Y, X[, 3]) by default, (Y, X, C) with named channels.
    size : int
        Output side (bilinear, antialiased).
    channels : tuple of str
        The prompt encoder's ``input_channels``.
    device : torch device
        Where the tensor is made.
    """
    if not channels:
        return frame_to_tensor(frame01, size, device)
    a = check_frame(frame01, channels)
    t = torch.from_numpy(np.ascontiguousarray(a)).to(device).permute(2, 0, 1)[None]
    if tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (t - MEAN) / STD


def inputs(frames: list[np.ndarray], size: int, channels: tuple[str, ...],
           device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(SAM2's input, the prompt encoder's input)`` of a batch of slices, both ``(N, ., size, size)``.

    Without named channels they are one and the same tensor (SAM2's normalised input); with them
    SAM2 gets the first channel of each slice (:func:`sam2_view`) and the encoder all of them
    (:func:`net_tensor`).
    """
    xn = torch.cat([net_tensor(f, size, channels, device) for f in frames])
    if not channels:
        return xn, xn
    return torch.cat([frame_to_tensor(sam2_view(f, channels), size, device) for f in frames]), xn


def check_channels(found: tuple[str, ...], expected: tuple[str, ...] | None, name: str = "the prompt encoder") -> None:
    """Raise ``ValueError`` when ``expected`` (None: anything) differs from a file's channel spec."""
    if expected is not None and tuple(found) != tuple(expected):
        want = ", ".join(expected) or "SAM2's own input"
        got = ", ".join(found) or "SAM2's own input"
        raise ValueError(f"{name} takes the input channels [{got}], not [{want}]")


def check_stack(channels: tuple[str, ...], stack, propagate: bool = False) -> None:
    """Refuse (one-line ``ValueError``) a stack that cannot feed a prompt encoder with named channels.

    Such an encoder needs a colour stack whose channels are its ``channels`` in order (a
    ``FrameStack`` gives slices as (Y, X, 3), so only three named channels can be fed); SAM2's
    memory propagation would see all three channels, so first-frame-propagate is refused.
    """
    if not channels:
        return
    n = getattr(stack, "n_channels", None)
    if len(channels) != 3 or n != 3:
        raise ValueError(f"this prompt encoder needs a (N, Y, X, {len(channels)}) stack with the channels "
                         f"{', '.join(channels)} in that order; got {n or 'no'} channel(s)")
    if propagate:
        raise ValueError("first-frame-propagate is not supported with a multi-channel prompt encoder; use per-frame")
