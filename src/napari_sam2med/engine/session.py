"""An interactive segmentation session over one stack.

A :class:`Session` owns the prompts of every object, a bounded cache of image embeddings
and the conditioning results of prompted slices. ``segment_slice`` answers a click;
``propagate`` (see :mod:`.propagation`) tracks every object through the stack.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..io import FrameStack, open_stack
from ..sam2.device import autocast_context
from ..sam2.model import FrameFeatures, PointInputs, SAM2Model
from .encoders import EngineKind, make_encoder
from .memory import MemoryBank, MemoryEntry, MemoryKind, MemoryPolicy, make_policy
from .preprocess import FeatureCache, frame_to_tensor
from .prompts import PromptSet, SlicePrompt

__all__ = ["Session", "SliceResult"]


@dataclass
class SliceResult:
    """Masks predicted on one slice, one boolean (Y, X) array per object id."""

    slice_idx: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)


@dataclass
class _CondRecord:
    key: str
    entry: MemoryEntry
    points: np.ndarray
    labels: np.ndarray
    box: Any


def _prompt_key(p: SlicePrompt) -> str:
    h = hashlib.sha1()
    for part in (p.points, p.labels, p.box, p.mask):
        h.update(b"|" if part is None else np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


class Session:
    """Prompts, embeddings and conditioning memory of one stack.

    Parameters
    ----------
    model : SAM2Model
        The network (any device).
    stack : FrameStack, array or path
        (N, Y, X) or (N, Y, X, C) data; arrays are wrapped in a lazy :class:`FrameStack`.
    cache_size : int
        Image embeddings kept (LRU); a second click on a cached slice costs only the decoder.
    memory_policy : MemoryPolicy, optional
        Memory selection; overrides ``memory`` when given.
    memory : MemoryKind or {"sam2", "slm"}
        ``"sam2"`` (default): SAM2's own memory. ``"slm"``: SLM-SAM2's short-long memory; a model
        without the SLM modules gets them, initialised from its long memory (it then still
        predicts like SAM2 until those modules are trained).
    encode_batch : int
        During propagation, slices ahead are encoded this many at a time (one batched
        forward is faster than several single ones); the cache holds at least this many.
    engine : EngineKind or {"torch", "onnx", "openvino", "auto"}
        CPU engine (:mod:`.encoders`): ``"torch"`` (default), ``"onnx"`` (the image encoder, memory
        attention and tracking heads on ONNX Runtime, exported once and cached; falls back to PyTorch
        with one log line), ``"openvino"`` (the same exported files on OpenVINO, optional extra) or
        ``"auto"`` (each part timed once, the fastest kept). The encoder is built on the first
        encode, so an export happens only when a slice is needed.
    crop_context : float, optional
        Crop-around-the-prompt for :meth:`segment_slice` (:mod:`.crop`): ``None`` (default) takes the
        model's ``config.crop_context`` (3.0 for ``sam2med-small-ct``, none for the official models),
        0 means whole slices. Propagation in crop mode goes through :func:`.crop.propagate_session`.
    """

    def __init__(self, model: SAM2Model, stack, *, cache_size: int = 8,
                 memory_policy: MemoryPolicy | None = None, encode_batch: int = 4,
                 memory: MemoryKind | str = MemoryKind.SAM2, engine: EngineKind | str = EngineKind.TORCH,
                 crop_context: float | None = None):
        if isinstance(stack, (str, Path)):
            stack = open_stack(stack)
        elif not isinstance(stack, FrameStack):
            stack = FrameStack(stack)
        if len(stack) < 1:
            raise ValueError("the stack has no slices")
        self.memory = MemoryKind.parse(memory)
        if self.memory is MemoryKind.SLM:
            from ..sam2.slm import attach_slm

            attach_slm(model)  # no-op when the model already has the SLM modules
        self.model = model
        self.stack = stack
        self.policy: MemoryPolicy = memory_policy or make_policy(self.memory)
        self.prompts = PromptSet(len(stack), stack.frame_shape)
        if encode_batch < 1:
            raise ValueError("encode_batch must be at least 1")
        self.encode_batch = int(encode_batch)
        self.engine = EngineKind.parse(engine)
        self._encoder = None  # built by the first encode (see ``encoder``)
        self.crop_context = crop_context
        self._crop_sessions: dict = {}  # crop window -> sub-session (engine.crop.segment_slice_cropped)
        self.features = FeatureCache(self._encode, capacity=max(cache_size, encode_batch + 1))
        self._cond: dict[tuple[int, int], _CondRecord] = {}
        self._tracked: dict[int, set[int]] = {}
        self._last_out = None
        self.lock = threading.RLock()

    @property
    def lookahead_batch(self) -> int:
        """Slices encoded together during propagation: ``encode_batch``, capped on CPU.

        On CPU a batch whose largest activation (the first stage's query/key/value tensor) exceeds
        glibc's 32 MB mmap threshold is freshly mapped on every forward, and its page faults cost
        more than batching saves (measured at 256 px: batch 4 slower per slice than batch 1).
        GPU allocators cache blocks, so there the batch is not capped.
        """
        if self.device.type != "cpu":
            return self.encode_batch
        cfg = self.model.config
        tokens = (cfg.image_size // 4) ** 2
        per_slice = tokens * 6 * cfg.hiera.embed_dim * 4  # 3 x (2 x embed_dim) fp32 channels
        return max(1, min(self.encode_batch, (32 << 20) // per_slice))

    def set_memory(self, memory: MemoryKind | str) -> None:
        """Switch the memory of later propagations (``"sam2"`` or ``"slm"``, see the class doc).

        Cached results of prompted slices are dropped, since a correction on a propagated slice
        was predicted with the previous memory; they are recomputed on demand (decoder only).
        """
        kind = MemoryKind.parse(memory)
        if kind is self.memory:
            return
        with self.lock:
            if kind is MemoryKind.SLM:
                from ..sam2.slm import attach_slm

                attach_slm(self.model)
            self.memory, self.policy = kind, make_policy(kind)
            self._cond.clear()

    # ------------------------------------------------------------ prompts
    @property
    def num_slices(self) -> int:
        return len(self.stack)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def add_points(self, obj_id: int, slice_idx: int, points, labels=None, clear: bool = False) -> None:
        """Add (row, col) points with labels (1 positive, 0 negative) for one object on one slice."""
        self.prompts.add_points(obj_id, slice_idx, points, labels, clear=clear)

    def set_box(self, obj_id: int, slice_idx: int, box) -> None:
        """Set a (row0, col0, row1, col1) box prompt."""
        self.prompts.set_box(obj_id, slice_idx, box)

    def set_mask(self, obj_id: int, slice_idx: int, mask) -> None:
        """Use a binary (Y, X) mask as the prompt of one object on one slice."""
        self.prompts.set_mask(obj_id, slice_idx, mask)

    def clear_prompts(self, obj_id: int | None = None, slice_idx: int | None = None) -> None:
        """Remove prompts (and their cached results)."""
        self.prompts.clear(obj_id, slice_idx)
        for key in [k for k in self._cond if (obj_id is None or k[0] == obj_id)
                    and (slice_idx is None or k[1] == slice_idx)]:
            del self._cond[key]

    def remove_object(self, obj_id: int) -> None:
        """Forget an object entirely."""
        self.clear_prompts(obj_id)
        self._tracked.pop(obj_id, None)

    # ------------------------------------------------------------ model calls
    @property
    def encoder(self):
        """The image-encoder backend (``encoder.name`` says which engine runs); built on first use.

        Once built it is returned without taking :attr:`lock`, so a background encode
        (:mod:`.precompute`) never waits for a click that holds the lock.
        """
        if self._encoder is None:
            with self.lock:
                if self._encoder is None:
                    self._encoder = make_encoder(self.model, self.engine)
        return self._encoder

    def _encode(self, idxs: list[int]) -> list[FrameFeatures]:
        s = self.model.image_size
        x = torch.cat([frame_to_tensor(self.stack.normalized(i), s, self.device) for i in idxs])
        f = self.encoder(x)
        one = lambda t, k: t[k:k + 1]  # noqa: E731
        return [FrameFeatures(one(f.vision, k), one(f.vision_pos, k), (one(f.high_res[0], k), one(f.high_res[1], k)))
                for k in range(len(idxs))]

    def _points(self, p: SlicePrompt) -> PointInputs | None:
        h, w = self.stack.frame_shape
        s = self.model.image_size
        rows, cols, labels = [], [], []
        if p.box is not None:
            r0, c0, r1, c1 = p.box
            rows += [r0, r1]
            cols += [c0, c1]
            labels += [2, 3]
        if len(p.points):
            rows += list(p.points[:, 0])
            cols += list(p.points[:, 1])
            labels += list(p.labels)
        if not labels:
            return None
        xy = np.stack([np.asarray(cols) / w * s, np.asarray(rows) / h * s], axis=-1).astype(np.float32)
        return PointInputs(torch.from_numpy(xy)[None].to(self.device),
                           torch.tensor([labels], dtype=torch.int32, device=self.device))

    def _mask_input(self, mask: np.ndarray) -> torch.Tensor:
        s = self.model.image_size
        m = torch.from_numpy(mask.astype(np.float32))[None, None].to(self.device)
        if tuple(m.shape[-2:]) != (s, s):
            m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        return m

    def _correction_context(self, obj_id: int, slice_idx: int):
        """Memory and previous logits for a prompt on a slice that was already propagated."""
        others = {s: r.entry for (o, s), r in self._cond.items() if o == obj_id and s != slice_idx}
        if slice_idx not in self._tracked.get(obj_id, ()) or not others:
            return None, None
        self._ensure_memory(obj_id, others)
        bank = MemoryBank(cond=others)
        ctx = self.policy.select(slice_idx, bank, reverse=False, num_frames=self.num_slices,
                                 config=self.model.config)
        prev = None
        if self._last_out is not None:
            mask = np.asarray(self._last_out[slice_idx]) == obj_id
            s4 = self.model.image_size // 4
            m = torch.from_numpy(mask.astype(np.float32))[None, None].to(self.device) * 20.0 - 10.0
            prev = F.interpolate(m, size=(s4, s4), mode="bilinear", align_corners=False, antialias=True)
        return ctx, prev

    def conditioning_entry(self, obj_id: int, slice_idx: int) -> MemoryEntry:
        """The prediction of a prompted slice (cached until its prompts change)."""
        p = self.prompts.get(obj_id, slice_idx)
        if p is None or p.empty:
            raise ValueError(f"object {obj_id} has no prompt on slice {slice_idx}")
        key = _prompt_key(p)
        old = self._cond.get((obj_id, slice_idx))
        if old is not None and old.key == key:
            return old.entry
        with self.lock, torch.inference_mode():
            feats = self.features.get(slice_idx)
            memory, prev = self._correction_context(obj_id, slice_idx) if p.mask is None else (None, None)
            if (old is not None and p.mask is None and len(p.points) > len(old.points)
                    and np.array_equal(p.points[: len(old.points)], old.points)
                    and np.array_equal(p.labels[: len(old.labels)], old.labels)
                    and _same(old.box, p.box)):
                prev = torch.clamp(old.entry.low_res_logits, -32.0, 32.0)  # refine the shown mask
            with autocast_context(self.device):
                out = self.model.track_step(
                    feats, memory=memory,
                    points=None if p.mask is not None else self._points(p),
                    mask=None if p.mask is None else self._mask_input(p.mask),
                    prev_mask_logits=prev, run_memory_encoder=False)
        entry = MemoryEntry(features=None, obj_ptr=out.obj_ptr.float(), low_res_logits=out.low_res_masks.float(),
                            score=out.object_score_logits.float())
        self._cond[(obj_id, slice_idx)] = _CondRecord(key, entry, p.points.copy(), p.labels.copy(),
                                                      None if p.box is None else p.box.copy())
        return entry

    def _ensure_memory(self, obj_id: int, entries: dict[int, MemoryEntry]) -> None:
        """Encode memory for conditioning entries that lack it (as SAM2's preflight does)."""
        for s, e in entries.items():
            if e.features is not None:
                continue
            with self.lock, torch.inference_mode(), autocast_context(self.device):
                feats = self.features.get(s)
                s_img = self.model.image_size
                high = F.interpolate(e.low_res_logits, size=(s_img, s_img), mode="bilinear", align_corners=False)
                mem = self.model.encode_memory(feats, high, e.score, from_points=True)
            e.features = mem.to(torch.bfloat16)

    def to_image_masks(self, low_res_logits: torch.Tensor) -> np.ndarray:
        """Upsample low-res logits (B, 1, h, w) to the stack's (Y, X) and threshold at 0."""
        h, w = self.stack.frame_shape
        up = F.interpolate(low_res_logits.float(), size=(h, w), mode="bilinear", align_corners=False)
        return (up[:, 0] > 0).cpu().numpy()

    def segment_slice(self, slice_idx: int, obj_ids: Iterable[int] | None = None) -> SliceResult:
        """Predict the prompted objects on one slice.

        Parameters
        ----------
        slice_idx : int
            The slice.
        obj_ids : iterable of int, optional
            Objects to predict; default every object with a prompt on this slice.
        """
        if not 0 <= slice_idx < self.num_slices:
            raise ValueError(f"slice {slice_idx} is out of range 0..{self.num_slices - 1}")
        ids = [o for o in (obj_ids if obj_ids is not None else self.prompts.object_ids)
               if self.prompts.get(o, slice_idx) is not None]
        if not ids:
            raise ValueError(f"no prompts on slice {slice_idx}: add points, a box or a mask first")
        from .crop import resolve_context, segment_slice_cropped

        context = resolve_context(self.model, self.crop_context)
        if context is not None:  # a model trained on crops around the prompt (config.crop_context)
            return segment_slice_cropped(self, slice_idx, ids, context)
        res = SliceResult(slice_idx)
        for o in ids:
            e = self.conditioning_entry(o, slice_idx)
            res.masks[o] = self.to_image_masks(e.low_res_logits)[0]
            res.scores[o] = float(e.score.flatten()[0])
        return res

    # ------------------------------------------------------------ propagation
    def propagate(self, direction: str = "both", start: int | None = None, stop: int | None = None,
                  obj_ids: Iterable[int] | None = None, out=None):
        """Track the prompted objects through the stack; a generator, see :func:`.propagation.propagate`."""
        from .propagation import propagate

        return propagate(self, direction=direction, start=start, stop=stop, obj_ids=obj_ids, out=out)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))
