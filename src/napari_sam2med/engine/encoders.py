"""Pluggable CPU inference engines of a :class:`~.session.Session`.

An engine is a callable ``engine(images (B, 3, S, S)) -> FrameFeatures`` (the image encoder) with a
``name`` and two methods giving what propagation runs on a tracked frame: ``memory_attention()``
(called like ``model.memory_attention``) and ``track_heads()`` (``heads(pix, feats) -> TrackOutput``:
decoder and memory encoder); ``None`` means the model's own PyTorch code.

* ``torch`` (default): PyTorch (autocast on CUDA).
* ``onnx``: the image encoder, the memory attention and the heads exported to ONNX and run by ONNX
  Runtime on the CPU (:mod:`.onnx_engine`, :mod:`.onnx_memattn`, :mod:`.onnx_heads`; exact float32,
  within 1e-3 of PyTorch; the tracking parts are exported on first use). If onnxruntime is not
  installed, the model is not on the CPU, or an export fails, PyTorch runs that part, with one log line.
* ``openvino``: the same ONNX files run by OpenVINO (optional extra ``openvino``), same fallback.
* ``auto``: on the CPU, the first encode runs every available engine on that slice and keeps the
  fastest for the rest of the session (the first result comes from the last runtime timed); the
  memory attention and the heads are chosen the same way on the first tracked frame. Elsewhere ``torch``.

Every engine's image encoder can be stopped mid-run by a background precompute's preempt token
(:mod:`.preempt`); calls without one run as usual.
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
from .preempt import current_token, stop_points

__all__ = ["EngineKind", "TorchEncoder", "RuntimeEngine", "AutoEncoder", "AutoPart", "make_encoder"]

log = logging.getLogger(__name__)

Encoder = Callable[[torch.Tensor], FrameFeatures]
_INSTALL = {"onnx": "pip install 'napari-sam2med[cpu-engine]'", "openvino": "pip install 'napari-sam2med[openvino]'"}


class EngineKind(str, enum.Enum):
    """Which engine runs the model on the CPU (see the module docstring)."""

    TORCH = "torch"
    ONNX = "onnx"
    OPENVINO = "openvino"
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
        token = current_token()  # a background encode: it may stop between modules
        with torch.inference_mode(), autocast_context(self.model.device), stop_points(self.model.image_encoder, token):
            return self.model.encode_image(images)

    def memory_attention(self):
        """``None``: propagation uses the model's own memory attention."""
        return None

    def track_heads(self):
        """``None``: propagation uses the model's own decoder and memory encoder."""
        return None


class RuntimeEngine:
    """The exported encoder on one runtime, and its memory attention, exported on first use.

    Parameters
    ----------
    model : SAM2Model
        A CPU model.
    runtime : {"onnx", "openvino"}
        The runtime (and ``name``).
    folder : path, optional
        ONNX export cache (default ``<checkpoint cache>/onnx``).
    """

    def __init__(self, model: SAM2Model, runtime: str, folder: str | Path | None = None):
        from .onnx_engine import OnnxEncoder

        self.model, self.name, self.folder = model, runtime, folder
        self.encoder = OnnxEncoder(model, folder=folder, runtime=runtime)
        self._parts: dict[str, object] = {}

    def __call__(self, images: torch.Tensor) -> FrameFeatures:
        return self.encoder(images)

    def _part(self, what: str, cls):
        """Build ``cls`` once; ``None`` after one log line if it cannot be exported."""
        if what not in self._parts:
            from .onnx_engine import OnnxExportError

            try:
                self._parts[what] = cls(self.model, folder=self.folder, runtime=self.name)
            except (OnnxExportError, ImportError, ValueError) as err:
                log.warning("engine %s: the %s could not be exported (%s); using PyTorch for it", self.name, what, err)
                self._parts[what] = None
        return self._parts[what]

    def memory_attention(self):
        """The exported memory attention, or ``None`` after one log line if it cannot be exported."""
        from .onnx_memattn import OnnxMemoryAttention

        return self._part("memory attention", OnnxMemoryAttention)

    def track_heads(self):
        """The exported decoder + memory encoder of a tracked frame, or ``None`` (one log line)."""
        from .onnx_heads import OnnxTrackHeads

        return self._part("decoder and memory encoder", OnnxTrackHeads)


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


class AutoPart:
    """Times every candidate of a tracking part on its first call (after one untimed warm-up run each)
    and keeps the fastest; ``candidates`` maps an engine name to a callable."""

    def __init__(self, what: str, candidates: dict):
        self.what, self.candidates = what, candidates
        self.chosen = None
        self.timings: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "auto" if self.chosen is None else f"auto:{self.chosen}"

    def __call__(self, *args, **kwargs):
        if self.chosen is not None:
            return self.candidates[self.chosen](*args, **kwargs)
        out = None
        for name, part in self.candidates.items():  # the result of the last one is returned
            part(*args, **kwargs)  # the first tracked frame's memory is short: a warm-up costs little
            out, self.timings[name] = _timed(part, *args, **kwargs)
        self.chosen = min(self.timings, key=self.timings.get)
        log.info("engine auto (%s): %s -> %s", self.what,
                 ", ".join(f"{k} {v:.3f} s" for k, v in self.timings.items()), self.chosen)
        return out


class AutoEncoder:
    """Times every engine on the first call and keeps the fastest (``candidates``: name -> engine)."""

    def __init__(self, torch_encoder: TorchEncoder, *runtimes):
        self.candidates = {"torch": torch_encoder, **{r.name: r for r in runtimes}}
        self.chosen: Encoder | None = None
        self.timings: dict[str, float] = {}
        self._parts: dict[str, AutoPart] = {}

    @property
    def name(self) -> str:
        return "auto" if self.chosen is None else f"auto:{self.chosen.name}"

    def __call__(self, images: torch.Tensor) -> FrameFeatures:
        if self.chosen is not None:
            return self.chosen(images)
        out = None
        for name, enc in self.candidates.items():  # the last runtime's result is the one returned
            out, seconds = _timed(enc, images)
            self.timings[name] = seconds / len(images)
        best = min(self.timings, key=self.timings.get)
        self.chosen = self.candidates[best]
        log.info("engine auto: %s per slice -> %s", ", ".join(f"{k} {v:.3f} s" for k, v in self.timings.items()),
                 best)
        return out

    def _auto(self, what: str, torch_part, method: str):
        if what not in self._parts:
            found = {"torch": torch_part}
            for name, enc in self.candidates.items():
                part = getattr(enc, method)()
                if part is not None:
                    found[name] = part
            self._parts[what] = AutoPart(what, found)
        return self._parts[what] if len(self._parts[what].candidates) > 1 else None

    def memory_attention(self):
        """An :class:`AutoPart` over PyTorch and every runtime whose export worked (``None``: only PyTorch)."""
        return self._auto("memory attention", self.candidates["torch"].model.memory_attention, "memory_attention")

    def track_heads(self):
        """An :class:`AutoPart` over the decoder + memory encoder of PyTorch and every runtime."""
        from .propagation import torch_heads

        model = self.candidates["torch"].model
        return self._auto("decoder and memory encoder", lambda pix, feats: torch_heads(model, pix, feats),
                          "track_heads")


def _runtime_or_none(model: SAM2Model, runtime: str, folder: str | Path | None, quiet: bool = False):
    """The :class:`RuntimeEngine`, or ``None`` after ONE log line saying why PyTorch is used instead."""
    from .onnx_runtime import RUNTIMES, runtime_available

    if model.device.type != "cpu":
        log.warning("engine %s: runs on the CPU only and the model is on %s; using the PyTorch encoder",
                    runtime, model.device)
        return None
    if not runtime_available(runtime):
        if not quiet:
            log.warning("engine %s: %s is not installed (%s); using the PyTorch encoder", runtime, RUNTIMES[runtime],
                        _INSTALL[runtime])
        return None
    from .onnx_engine import OnnxExportError

    try:
        return RuntimeEngine(model, runtime, folder)
    except (OnnxExportError, ImportError) as err:
        log.warning("engine %s: the encoder could not be exported (%s); using the PyTorch encoder", runtime, err)
        return None


def make_encoder(model: SAM2Model, kind: EngineKind | str = EngineKind.TORCH, *,
                 folder: str | Path | None = None) -> Encoder:
    """Build the engine of ``kind`` for ``model`` (exporting to ONNX if needed).

    Parameters
    ----------
    model : SAM2Model
        The network.
    kind : EngineKind or {"torch", "onnx", "openvino", "auto"}
        The engine; ``onnx``, ``openvino`` and ``auto`` fall back to ``torch`` as the module docstring says.
    folder : path, optional
        ONNX export cache (default ``<checkpoint cache>/onnx``).
    """
    kind = EngineKind.parse(kind)
    torch_enc = TorchEncoder(model)
    if kind is EngineKind.TORCH or (kind is EngineKind.AUTO and model.device.type != "cpu"):
        return torch_enc
    if kind is EngineKind.AUTO:
        found = [e for r in ("onnx", "openvino") if (e := _runtime_or_none(model, r, folder, quiet=r != "onnx"))]
        return AutoEncoder(torch_enc, *found) if found else torch_enc
    engine = _runtime_or_none(model, kind.value, folder)
    return torch_enc if engine is None else engine
