"""Parts of SAM2 exported to ONNX and run on the CPU by ONNX Runtime or OpenVINO.

Three parts are exported (``part`` of the cache key):

* ``encoder``: exactly :meth:`SAM2Model.encode_image` (Hiera trunk, FPN neck and the mask
  decoder's ``conv_s0`` / ``conv_s1``), batch 1 at one image size.
* ``memattn``: the memory attention (:mod:`.onnx_memattn`), object batch and memory length dynamic.
* ``heads``: prompt encoder, mask decoder and memory encoder of a tracked frame (:mod:`.onnx_heads`).

Each is exported once per (model, part weights, image size, exporter) and cached in
``<cache_dir()>/onnx/`` (the checkpoint cache, ``$SAM2MED_CACHE``) with a ``.sha256`` sidecar; a
cached file whose checksum does not match, or that the runtime cannot load, is exported again,
never used. The same file serves both runtimes (:mod:`.onnx_runtime`).

The cache key holds a SHA-256 of the part's tensors rather than the checkpoint file's hash:
it is what the graph embeds, it covers random-init and fine-tuned models alike, and two
checkpoints that share an encoder share one export.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io.writers import atomic_write
from ..sam2.checkpoint import cache_dir, sha256_of, sidecar_path
from ..sam2.model import FrameFeatures, SAM2Model
from .onnx_runtime import open_runner

__all__ = ["EXPORTER_VERSION", "ExportKey", "OnnxEncoder", "OnnxExportError", "encoder_digest", "export_key",
           "ensure_exported", "onnx_cache_dir", "PARTS"]

log = logging.getLogger(__name__)

#: Bump when the exported graph changes (outputs, wrapper, export options): old files are then ignored.
_GRAPH_FORMAT = 1
#: Part of the cache key: a new torch (its exporter) gives a new file.
EXPORTER_VERSION = f"torch{torch.__version__.split('+')[0]}-dynamo-g{_GRAPH_FORMAT}"
_OUTPUTS = ("vision", "vision_pos", "high_res_s0", "high_res_s1")


#: The exportable parts (``ExportKey.part``).
PARTS = ("encoder", "memattn", "heads")
_WHAT = {"encoder": "image encoder", "memattn": "memory attention", "heads": "decoder and memory encoder"}


class OnnxExportError(RuntimeError):
    """A part could not be exported or loaded (the caller falls back to PyTorch)."""


class _EncoderGraph(nn.Module):
    """``encode_image`` as a module with plain tensor outputs (what the exporter traces)."""

    def __init__(self, model: SAM2Model):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        f = self.model.encode_image(images)
        return f.vision, f.vision_pos, f.high_res[0], f.high_res[1]


def _encoder_tensors(model: SAM2Model):
    yield from model.image_encoder.state_dict().items()
    dec = model.sam_mask_decoder
    for name in ("conv_s0", "conv_s1"):
        for k, v in getattr(dec, name).state_dict().items():
            yield f"{name}.{k}", v


def _part_tensors(model: SAM2Model, part: str):
    if part == "encoder":
        return _encoder_tensors(model)
    if part == "memattn":
        return iter(model.memory_attention.state_dict().items())
    if part == "heads":
        from .onnx_heads import heads_tensors

        return heads_tensors(model)
    raise ValueError(f"unknown ONNX part {part!r}; choose one of {', '.join(PARTS)}")


def encoder_digest(model: SAM2Model, part: str = "encoder") -> str:
    """SHA-256 over the names, shapes, dtypes and values of every tensor the exported graph of ``part`` embeds."""
    h = hashlib.sha256()
    for name, t in _part_tensors(model, part):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class ExportKey:
    """What one exported file is valid for."""

    model: str
    weights: str  # encoder_digest(model, part)
    image_size: int
    exporter: str = EXPORTER_VERSION
    part: str = "encoder"

    @property
    def filename(self) -> str:
        exp = hashlib.sha256(self.exporter.encode()).hexdigest()[:8]
        return f"{self.model}-{self.part}-{self.image_size}px-{self.weights[:16]}-{exp}.onnx"


def export_key(model: SAM2Model, part: str = "encoder") -> ExportKey:
    """The cache key of ``model``'s ``part`` (see :data:`PARTS`) at its configured image size."""
    return ExportKey(model.config.name, encoder_digest(model, part), int(model.image_size), part=part)


def onnx_cache_dir() -> Path:
    """``<checkpoint cache>/onnx``: where exported encoders live."""
    return cache_dir() / "onnx"


def export_encoder(model: SAM2Model, path: str | Path) -> None:
    """Export ``model.encode_image`` (batch 1, the model's image size) to the ONNX file ``path``."""
    s = int(model.image_size)
    example = torch.zeros(1, 3, s, s, device=model.device)
    _export_traced(model, _EncoderGraph(model), (example,), Path(path), ["images"], list(_OUTPUTS))


def export_memattn(model: SAM2Model, path: str | Path) -> None:
    """Export the memory attention (:class:`.onnx_memattn.MemAttnGraph`) to the ONNX file ``path``."""
    from .onnx_memattn import memattn_export_args

    graph, args, names, dynamic = memattn_export_args(model)
    _export_traced(model, graph, args, Path(path), names, ["fused"], dynamic)


def export_heads(model: SAM2Model, path: str | Path) -> None:
    """Export the heads of a tracked frame (:class:`.onnx_heads.HeadsGraph`) to the ONNX file ``path``."""
    from .onnx_heads import HEADS_OUTPUTS, heads_export_args

    graph, args, names, dynamic = heads_export_args(model)
    _export_traced(model, graph, args, Path(path), names, list(HEADS_OUTPUTS), dynamic)


def _export_traced(model: SAM2Model, graph: nn.Module, args: tuple, path: Path, input_names: list,
                   output_names: list, dynamic_shapes: dict | None = None) -> None:
    """Export ``graph`` (a wrapper around ``model``'s modules) with the model in a traceable state."""
    # torch.export cannot trace under inference mode, which the session's callers often hold. Hiera
    # caches its position embedding, keyed by the parameters' data pointers, when autograd is off
    # or they are frozen; fake tensors have no data pointer, so trace with autograd on and those
    # parameters requiring grad (the graph is the same; ONNX holds no autograd).
    pos = [p for m in model.modules() if hasattr(m, "_pos_cache")
           for p in (getattr(m, "pos_embed", None), getattr(m, "pos_embed_window", None))
           if isinstance(p, nn.Parameter)]
    flags = [p.requires_grad for p in pos]
    try:
        for p in pos:
            p.requires_grad_(True)
        with torch.inference_mode(False), torch.enable_grad():
            _export(model, graph, args, path, input_names, output_names, dynamic_shapes)
    finally:
        for p, flag in zip(pos, flags):
            p.requires_grad_(flag)


def _export(model: SAM2Model, graph: nn.Module, args: tuple, path: Path, input_names: list, output_names: list,
            dynamic_shapes: dict | None) -> None:
    # The exporter runs the forward on fake tensors; position-encoding modules memoise their grids
    # (``_grid_cache``, possibly made under inference mode), so trace with empty caches and put the
    # real ones back afterwards.
    saved = {m: dict(m._grid_cache) for m in model.modules() if isinstance(getattr(m, "_grid_cache", None), dict)}
    for m in saved:
        m._grid_cache.clear()
    was_training = model.training
    model.eval()
    # The exporter and its graph passes log and warn at length about internals; keep errors only.
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnx_ir", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, args, dynamo=True, optimize=True, input_names=input_names,
                                        output_names=output_names, dynamic_shapes=dynamic_shapes, verbose=False)
            if program is None:
                raise OnnxExportError("the exporter returned no program")
            program.save(str(path), external_data=False)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        for m, cache in saved.items():
            m._grid_cache.clear()
            m._grid_cache.update(cache)
        model.train(was_training)


def _session(path: Path, threads: int, runtime: str = "onnx"):
    return open_runner(path, threads, runtime)


def _load_cached(path: Path, threads: int, runtime: str = "onnx"):
    """A runner for a cached file, or ``None`` (missing, checksum mismatch, unloadable)."""
    if not path.exists():
        return None
    side = sidecar_path(path)
    recorded = side.read_text(encoding="utf-8").split()[:1] if side.exists() else []
    if not recorded or recorded[0] != sha256_of(path):
        log.warning("cached ONNX file %s does not match its checksum; exporting it again", path.name)
        return None
    try:
        return _session(path, threads, runtime)
    except Exception as err:  # the runtimes raise their own exception types for bad files
        log.warning("cached ONNX file %s cannot be loaded (%s); exporting it again",
                    path.name, str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None


def ensure_exported(model: SAM2Model, *, folder: str | Path | None = None, threads: int | None = None,
                    key: ExportKey | None = None, part: str = "encoder", runtime: str = "onnx"):
    """Return ``(path, runner)`` for ``model``'s ``part``, exporting it if not cached.

    Parameters
    ----------
    model : SAM2Model
        The network (the part's current weights and the image size are the key).
    folder : path, optional
        Cache folder; default :func:`onnx_cache_dir`.
    threads : int, optional
        Runtime intra-op threads; default ``torch.get_num_threads()``.
    key : ExportKey, optional
        Precomputed :func:`export_key` (hashing a large encoder takes a moment).
    part : {"encoder", "memattn", "heads"}
        What to export (ignored when ``key`` is given).
    runtime : {"onnx", "openvino"}
        Which runtime runs the file (:func:`.onnx_runtime.open_runner`).

    Raises
    ------
    OnnxExportError
        The export failed or its result cannot be loaded; nothing is left in the cache.
    """
    threads = torch.get_num_threads() if threads is None else threads
    key = key or export_key(model, part)
    folder = Path(folder) if folder is not None else onnx_cache_dir()
    path = folder / key.filename
    sess = _load_cached(path, threads, runtime)
    if sess is not None:
        return path, sess
    folder.mkdir(parents=True, exist_ok=True)
    log.warning("exporting the %s of %s at %d px to ONNX (once; cached in %s) ...",
                _WHAT[key.part], key.model, key.image_size, folder)
    exporter = {"encoder": export_encoder, "memattn": export_memattn, "heads": export_heads}[key.part]
    t0 = time.perf_counter()
    for stale in (path, sidecar_path(path)):
        stale.unlink(missing_ok=True)
    try:
        atomic_write(path, lambda tmp: exporter(model, tmp))
        atomic_write(sidecar_path(path),
                     lambda tmp: tmp.write_text(f"{sha256_of(path)}  {path.name}\n", encoding="utf-8"))
        sess = _session(path, threads, runtime)
    except Exception as err:
        for stale in (path, sidecar_path(path)):
            stale.unlink(missing_ok=True)
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise OnnxExportError(f"{type(err).__name__}: {msg}") from err
    log.info("exported %s in %.1f s", path.name, time.perf_counter() - t0)
    return path, sess


class OnnxEncoder:
    """``model.encode_image`` on ONNX Runtime or OpenVINO (CPU, exact float32 graph).

    Parameters
    ----------
    model : SAM2Model
        A CPU model; its encoder is exported (or taken from the cache) on construction.
    folder : path, optional
        Export cache folder (default :func:`onnx_cache_dir`).
    threads : int, optional
        Intra-op threads (default ``torch.get_num_threads()``, the PyTorch path's count).
    runtime : {"onnx", "openvino"}
        The runtime (``name`` of this encoder).
    """

    def __init__(self, model: SAM2Model, *, folder: str | Path | None = None, threads: int | None = None,
                 runtime: str = "onnx"):
        if model.device.type != "cpu":
            raise OnnxExportError(f"the ONNX engine runs on the CPU, the model is on {model.device}")
        self.name = runtime
        self.image_size = int(model.image_size)
        self.path, self.session = ensure_exported(model, folder=folder, threads=threads, runtime=runtime)
        self._input = "images"

    def __call__(self, images: torch.Tensor) -> FrameFeatures:
        """Encode normalised images (B, 3, S, S), one ONNX run per image (the graph has batch 1)."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"the ONNX encoder was exported for {self.image_size} px, got {tuple(images.shape)}")
        x = images.detach().to("cpu", torch.float32).numpy()
        runs = [self.session.run({self._input: np.ascontiguousarray(x[k:k + 1])}) for k in range(len(x))]
        cat = [torch.from_numpy(np.concatenate([r[j] for r in runs])) for j in range(len(_OUTPUTS))]
        return FrameFeatures(vision=cat[0], vision_pos=cat[1], high_res=(cat[2], cat[3]))
