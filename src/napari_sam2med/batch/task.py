"""Worker side of ``sam2med batch``: one model per worker (a dask worker plugin), one task per volume.

A task reads its volume lazily, runs the very function ``sam2med propagate`` runs
(:func:`napari_sam2med.engine.volume.segment_to_file`), writes the labels atomically and then a
JSON sidecar next to them. The sidecar's ``key`` (inputs, model, checkpoint hash) is what a rerun
compares to skip finished volumes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..io.writers import atomic_write
from .manifest import VolumeJob

__all__ = ["ModelSpec", "make_spec", "ModelPlugin", "PLUGIN_NAME", "sidecar_path", "job_key", "is_finished", "segment_job"]

PLUGIN_NAME = "sam2med-model"
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class ModelSpec:
    """What every worker loads once (picklable, sent to the workers).

    Attributes
    ----------
    name : str
        Registered model name.
    image_size : int or None
        Model input size.
    checkpoint : str or None
        Resolved checkpoint file (None with ``random_init``).
    checkpoint_sha256 : str
        SHA-256 of ``checkpoint`` (``"random-init-seed0"`` for random weights).
    random_init : bool
        Random weights, seeded so every worker builds the same ones.
    device : str
        ``"auto"`` (one GPU per worker when there are several), ``"cpu"``, ``"cuda:N"``...
    torch_threads : int or None
        Intra-op threads per worker (None: torch's default).
    direction : str
        Propagation direction.
    window : tuple of float or None
        Contrast window for non-uint8 volumes (None: robust percentiles, as ``propagate``).
    axis : str
        Slices to propagate through (``axial``, ``coronal``, ``sagittal``), as ``propagate --axis``.
    memory : str
        ``"sam2"`` or ``"slm"``, as ``propagate --memory``.
    prompt_encoder : str or None
        Resolved AutoSAM2 prompt-encoder file for ``auto`` entries (checked against the model).
    prompt_encoder_sha256 : str
        SHA-256 of that file ("" without one).
    video_mode : str
        ``auto`` entries: ``"per-frame"`` or ``"first-frame-propagate"``, as ``sam2med auto``.
    """

    name: str
    image_size: int | None
    checkpoint: str | None
    checkpoint_sha256: str
    random_init: bool = False
    device: str = "auto"
    torch_threads: int | None = None
    direction: str = "both"
    window: tuple[float, float] | None = None
    axis: str = "axial"
    memory: str = "sam2"
    prompt_encoder: str | None = None
    prompt_encoder_sha256: str = ""
    video_mode: str = "per-frame"


def make_spec(name: str, *, image_size: int | None = None, checkpoint: str | Path | None = None,
              random_init: bool = False, device: str = "auto", offline: bool | None = None,
              torch_threads: int | None = None, direction: str = "both",
              window: tuple[float, float] | None = None, axis: str = "axial", memory: str = "sam2",
              progress: bool = False, prompt_encoder: str | Path | None = None,
              video_mode: str = "per-frame") -> ModelSpec:
    """Resolve and check the checkpoint (and the prompt encoder) once, in the client; workers get the
    resolved files.

    Raises
    ------
    ValueError, FileNotFoundError
        Unknown model or size, a missing checkpoint (offline) or one of another architecture; a
        prompt encoder that is missing, not one, or trained against other SAM2 weights
        (``auto.prompt_net.PromptNetMismatch``, a ValueError).
    """
    from ..sam2.build import build_model, load_weights
    from ..sam2.checkpoint import resolve_checkpoint, sha256_of
    from ..sam2.configs import get_config

    cfg = get_config(name, image_size)
    common = dict(name=name, image_size=image_size, device=device, torch_threads=torch_threads,
                  direction=direction, window=None if window is None else tuple(float(v) for v in window),
                  axis=axis, memory=memory)
    if video_mode not in ("per-frame", "first-frame-propagate"):
        raise ValueError(f"unknown video mode {video_mode!r}; choose per-frame or first-frame-propagate")
    if random_init:
        spec = ModelSpec(checkpoint=None, checkpoint_sha256=f"random-init-seed{RANDOM_INIT_SEED}",
                         random_init=True, video_mode=video_mode, **common)
        return _with_prompt_encoder(spec, prompt_encoder, None)
    path = resolve_checkpoint(name, checkpoint=checkpoint, offline=offline, progress=progress)
    model = build_model(cfg)
    load_weights(model, path)  # a wrong checkpoint fails here, not once per worker
    spec = ModelSpec(checkpoint=str(Path(path).resolve()), checkpoint_sha256=sha256_of(path),
                     video_mode=video_mode, **common)
    return _with_prompt_encoder(spec, prompt_encoder, model)


def _with_prompt_encoder(spec: ModelSpec, prompt_encoder: str | Path | None, model) -> ModelSpec:
    """``spec`` with the resolved prompt encoder, refused here if it does not match the model's weights."""
    from dataclasses import replace

    from ..auto.prompt_net import load_prompt_net
    from ..auto.shipped import resolve_prompt_encoder
    from ..sam2.checkpoint import sha256_of

    if prompt_encoder is None:
        return spec
    path = resolve_prompt_encoder(prompt_encoder)
    load_prompt_net(path, model if model is not None else load_spec_model(replace(spec, device="cpu", torch_threads=None)))
    return replace(spec, prompt_encoder=str(Path(path).resolve()), prompt_encoder_sha256=sha256_of(path))


def _worker_device(device: str, worker_name: Any) -> str:
    """``auto`` with several GPUs: worker ``k`` of a local cluster takes GPU ``k mod n``."""
    import torch

    if device != "auto" or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    try:
        index = int(str(worker_name).rsplit("-", 1)[-1])
    except ValueError:
        return device
    return f"cuda:{index % torch.cuda.device_count()}"


def load_spec_model(spec: ModelSpec, worker_name: Any = None):
    """Load the model a spec describes (random weights are seeded: identical on every worker)."""
    import torch

    from ..sam2 import load_model

    if spec.torch_threads:
        torch.set_num_threads(int(spec.torch_threads))
    device = _worker_device(spec.device, worker_name)
    with torch.random.fork_rng(devices=[]):
        if spec.random_init:
            torch.manual_seed(RANDOM_INIT_SEED)
        return load_model(spec.name, image_size=spec.image_size, checkpoint=spec.checkpoint,
                          random_init=spec.random_init, device=device, offline=True, progress=False)


class ModelPlugin(WorkerPlugin):
    """Loads the model once when a worker starts (or joins later) and keeps it for every task."""

    name = PLUGIN_NAME

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.model = None
        self.prompt_net = None

    def setup(self, worker) -> None:
        self.model = load_spec_model(self.spec, worker.name)
        if self.spec.prompt_encoder:
            from ..auto.prompt_net import load_prompt_net

            self.prompt_net = load_prompt_net(self.spec.prompt_encoder, self.model)[0]

    def teardown(self, worker) -> None:
        self.model = self.prompt_net = None


def _plugin(spec: ModelSpec) -> ModelPlugin:
    from distributed import get_worker

    plugin = get_worker().plugins.get(PLUGIN_NAME)
    if plugin is None or plugin.spec != spec:
        raise RuntimeError("the sam2med model plugin is not registered on this worker")
    return plugin


def sidecar_path(out: Path) -> Path:
    """``labels.tif`` -> ``labels.tif.json``."""
    return out.with_name(out.name + ".json")


def _image_stamp(path: Path) -> list[int]:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


def job_key(job: VolumeJob, spec: ModelSpec) -> dict:
    """Everything that determines a volume's labels; a sidecar with the same key means done."""
    key = {
        "image": str(job.image), "image_stamp": _image_stamp(job.image), "prompts": job.prompts,
        "model": spec.name, "image_size": spec.image_size, "checkpoint_sha256": spec.checkpoint_sha256,
        "direction": spec.direction, "window": None if spec.window is None else list(spec.window),
        "axis": spec.axis, "memory": spec.memory,
    }
    if job.auto:  # (prompted volumes keep their key: earlier runs' outputs still count as done)
        key.update(auto=True, prompt_encoder_sha256=spec.prompt_encoder_sha256, video_mode=spec.video_mode)
    return key


def is_finished(job: VolumeJob, spec: ModelSpec) -> bool:
    """True when ``job.out`` exists with a sidecar whose key matches this run."""
    side = sidecar_path(job.out)
    if not job.out.exists() or not side.is_file():
        return False
    try:
        return json.loads(side.read_text(encoding="utf-8")).get("key") == json.loads(json.dumps(job_key(job, spec)))
    except (OSError, ValueError):
        return False


def segment_job(job: VolumeJob, spec: ModelSpec) -> dict:
    """Segment one volume on a dask worker; return a small summary (never the labels).

    Raises whatever reading or segmenting raises; the scheduler retries and then reports it.
    """
    from ..engine.progress import run_to_end
    from ..engine.prompts import PromptSet
    from ..engine.volume import open_volume, segment_to_file

    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    plugin = _plugin(spec)
    model = plugin.model
    stack = open_volume(job.image, window=spec.window, axis=spec.axis)  # lazy: slices are read as needed
    job.out.parent.mkdir(parents=True, exist_ok=True)
    if job.auto:  # no prompts: the AutoSAM2 prompt encoder (as `sam2med auto`)
        from ..auto.infer import auto_segment_to_file

        if plugin.prompt_net is None:
            raise RuntimeError("an auto entry reached a worker without a prompt encoder")
        run_to_end(auto_segment_to_file(model, plugin.prompt_net, stack, job.out, spec.video_mode, memory=spec.memory))
        objects = [1]
    else:
        prompts = PromptSet.from_json(job.prompts, len(stack), stack.frame_shape)
        run_to_end(segment_to_file(model, stack, prompts, job.out, direction=spec.direction, memory=spec.memory))
        objects = prompts.object_ids
    seconds = time.perf_counter() - t0
    sidecar = {
        "key": job_key(job, spec),
        "tool": "sam2med batch",
        "model": spec.name,
        "checkpoint": spec.checkpoint,
        "checkpoint_sha256": spec.checkpoint_sha256,
        "prompts_source": job.source,
        "device": str(model.device),
        "worker": os.getpid(),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "slices": len(stack),
        "objects": objects,
        "spec": asdict(spec),
    }
    text = json.dumps(sidecar, indent=1)
    atomic_write(sidecar_path(job.out), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return {"index": job.index, "seconds": seconds, "device": str(model.device)}
