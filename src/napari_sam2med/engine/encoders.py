"""Pluggable image-encoder backends of a :class:`~.session.Session`.

An encoder is a callable ``encoder(images (B, 3, S, S)) -> FrameFeatures`` with a ``name``.

* ``torch`` (default): ``model.encode_image`` in PyTorch (autocast on CUDA).
* ``onnx``: the same graph exported to ONNX and run by ONNX Runtime on the CPU
  (:mod:`.onnx_engine`, exact float32; outputs within 1e-3 of PyTorch). If onnxruntime is not
  installed, the model is not on the CPU, or the export fails, the session falls back to
  PyTorch with one log line.
* ``auto``: on the CPU, the session's first encode runs both engines on that slice, times
  them and keeps the faster one for the rest of the session (the result of the first
  encode comes from the ONNX run); elsewhere ``torch``.
"""

from __future__ import annotations

import enum
import logging
import time
from pathlib import Path
from typing import Callable

import torch

from ..sam2.device import autocast_context
from ..sam2.model import FrameFeatures, SAM2Model

__all__ = ["EngineKind", "TorchEncoder", "AutoEncoder", "make_encoder"]

log = logging.getLogger(__name__)

Encoder = Callable[[torch.Tensor], FrameFeatures]


class EngineKind(str, enum.Enum):
    """Which engine encodes images (see the module docstring)."""

    TORCH = "torch"
    ONNX = "onnx"
    AUTO = "auto"

    @classmethod
    def parse(cls, value: "EngineKind | str") -> "EngineKind":
        """Accept an :class:`EngineKind` or its value; ``ValueError`` names the choices otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown engine {value!r}; choose one of {', '.join(k.value for k in cls)}") from None


class TorchEncoder:
    """``model.encode_image`` in PyTorch."""

    name = "torch"

    def __init__(self, model: SAM2Model):
        self.model = model

    def __call__(self, images: torch.Tensor) -> FrameFeatures:
        with torch.inference_mode(), autocast_context(self.model.device):
            return self.model.encode_image(images)


class AutoEncoder:
    """Times both engines on the first call and keeps the faster one."""

    def __init__(self, torch_encoder: TorchEncoder, onnx_encoder: Encoder):
        self.candidates = {"torch": torch_encoder, "onnx": onnx_encoder}
        self.chosen: Encoder | None = None
        self.timings: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "auto" if self.chosen is None else f"auto:{self.chosen.name}"

    def __call__(self, images: torch.Tensor) -> FrameFeatures:
        if self.chosen is not None:
            return self.chosen(images)
        out = None
        for name in ("torch", "onnx"):  # the ONNX result is the one returned
            t0 = time.perf_counter()
            out = self.candidates[name](images)
            self.timings[name] = (time.perf_counter() - t0) / len(images)
        best = min(self.timings, key=self.timings.get)
        self.chosen = self.candidates[best]
        log.info("engine auto: torch %.3f s, onnx %.3f s per slice -> %s",
                 self.timings["torch"], self.timings["onnx"], best)
        return out


def _onnx_or_none(model: SAM2Model, folder: str | Path | None) -> Encoder | None:
    """The ONNX encoder, or ``None`` after ONE log line saying why PyTorch is used instead."""
    if model.device.type != "cpu":
        log.warning("engine onnx: runs on the CPU only and the model is on %s; using the PyTorch encoder",
                    model.device)
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.warning("engine onnx: onnxruntime is not installed (pip install 'napari-sam2med[cpu-engine]'); "
                    "using the PyTorch encoder")
        return None
    from .onnx_engine import OnnxEncoder, OnnxExportError

    try:
        return OnnxEncoder(model, folder=folder)
    except (OnnxExportError, ImportError) as err:
        log.warning("engine onnx: the encoder could not be exported (%s); using the PyTorch encoder", err)
        return None


def make_encoder(model: SAM2Model, kind: EngineKind | str = EngineKind.TORCH, *,
                 folder: str | Path | None = None) -> Encoder:
    """Build the image encoder of ``kind`` for ``model`` (exporting to ONNX if needed).

    Parameters
    ----------
    model : SAM2Model
        The network.
    kind : EngineKind or {"torch", "onnx", "auto"}
        The engine; ``onnx`` and ``auto`` fall back to ``torch`` as the module docstring says.
    folder : path, optional
        ONNX export cache (default ``<checkpoint cache>/onnx``).
    """
    kind = EngineKind.parse(kind)
    torch_enc = TorchEncoder(model)
    if kind is EngineKind.TORCH or (kind is EngineKind.AUTO and model.device.type != "cpu"):
        return torch_enc
    onnx_enc = _onnx_or_none(model, folder)
    if onnx_enc is None:
        return torch_enc
    return onnx_enc if kind is EngineKind.ONNX else AutoEncoder(torch_enc, onnx_enc)
