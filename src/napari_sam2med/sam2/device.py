"""Device selection and mixed-precision context for inference."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(pref: str | torch.device | None = "auto") -> torch.device:
    """Resolve a device preference to an available ``torch.device``.

    Parameters
    ----------
    pref : str or torch.device
        ``"auto"`` (or ``None``): CUDA, then MPS, then CPU. Explicit
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` are checked for
        availability.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        Unknown device string, or the requested device is not available.
    """
    if pref is None or (isinstance(pref, str) and pref.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(pref.strip().lower() if isinstance(pref, str) else pref)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {pref!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {pref!r} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {pref!r} requested but only {count} CUDA device(s) exist")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {pref!r} requested but MPS is not available")
        return device
    raise ValueError(f"unsupported device {pref!r}: use auto, cpu, cuda, cuda:N or mps")


def autocast_context(device: str | torch.device, enabled: bool = True) -> ContextManager:
    """bfloat16 autocast on CUDA, a no-op context elsewhere.

    Parameters
    ----------
    device : str or torch.device
        Device the model runs on.
    enabled : bool
        ``False`` always returns the no-op context (full precision).
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
