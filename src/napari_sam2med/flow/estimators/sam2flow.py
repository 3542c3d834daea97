"""Streaming SAM2Flow estimator (``FlowEstimator`` protocol) and weight loading."""

from __future__ import annotations

import contextlib
import json
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..net.model import FrameFeatures, SAM2Flow, SAM2FlowConfig, pad_to_stride
from ..types import FlowStep, RoiPrompt

__all__ = ["SAM2FlowEstimator", "load_flow_model", "save_flow_weights", "default_weights_path", "prompts_to_tensors",
           "span_weight", "SPAN_SPEED"]

WEIGHTS_NAME = "sam2flow_v2.pt"
#: SHA-256 of the shipped weights; :func:`load_flow_model` checks it when loading them.
WEIGHTS_SHA256 = "46066b2f7630c33ab847c185a006fd27ceb5877bde57dc0ff95ac6fd2b4139c5"
#: Speed scale (px/frame) of the span fusion: where both the 1-frame flow and the k-frame flow / k
#: are much slower than this, the latter replaces the former (benchmarks/RESULTS.md, session 6).
SPAN_SPEED = 2.0


def span_weight(span_flow: np.ndarray, pair_flow: np.ndarray, speed: float = SPAN_SPEED) -> np.ndarray:
    """Per-pixel weight ``exp(-(max(|v_k|, |v_1|) / speed)^2)`` of the per-frame k-span flow.

    Parameters
    ----------
    span_flow, pair_flow : np.ndarray
        (..., 2) k-frame flow / k and 1-frame flow. Using the larger speed keeps a fast 1-frame
        measurement where the k-frame look-up fails (k times the displacement) and reports slow.
    speed : float
        Speed scale in px/frame.

    Returns
    -------
    np.ndarray
        (..., 1) float32 weights in (0, 1].
    """
    fastest = np.maximum(np.linalg.norm(span_flow, axis=-1), np.linalg.norm(pair_flow, axis=-1))
    return np.exp(-np.square(fastest / speed))[..., None].astype(np.float32)


def file_sha256(path) -> str:
    """Hex SHA-256 of a file."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_weights_path() -> Path:
    """Path of the shipped weights (``napari_sam2med/models/sam2flow_v2.pt``; v1 stays beside it)."""
    return Path(str(resources.files("napari_sam2med") / "models" / WEIGHTS_NAME))


def load_flow_model(path=None, device="cpu") -> SAM2Flow:
    """Build SAM2Flow and load trained weights strictly.

    Parameters
    ----------
    path : str or Path, optional
        Checkpoint ``{"config": dict, "model": state_dict}``; default: the shipped weights,
        checked against :data:`WEIGHTS_SHA256`.
    device : str or torch.device
        Target device.

    Returns
    -------
    SAM2Flow
        The model in eval mode, float32.
    """
    path = Path(path) if path is not None else default_weights_path()
    shipped = path.resolve() == default_weights_path().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"SAM2Flow weights not found: {path}")
    if shipped and file_sha256(path) != WEIGHTS_SHA256:
        raise ValueError(f"{path} does not match the pinned SHA-256 of the shipped weights (corrupt or replaced)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path} is not a SAM2Flow checkpoint (no 'model' entry)")
    model = SAM2Flow(SAM2FlowConfig.from_dict(ckpt.get("config", {})))
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()}, strict=True)
    return model.to(device).eval()


def save_flow_weights(model: SAM2Flow, path, extra: dict | None = None, half: bool = True) -> Path:
    """Write ``{"config", "model", "meta"}`` (fp16 tensors by default) with the one atomic writer.

    Parameters
    ----------
    model : SAM2Flow
        The model whose state dict and config are saved.
    path : str or Path
        Target file (its folder is created).
    extra : dict, optional
        JSON-able metadata (steps, wall time, provenance).
    half : bool
        Store floating-point tensors as fp16.
    """
    from ...io.writers import atomic_write

    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"config": model.cfg.to_dict(), "model": state, "meta": json.dumps(extra or {})}
    return atomic_write(path, lambda tmp: torch.save(blob, tmp))


def prompts_to_tensors(rois: Sequence[RoiPrompt], device="cpu"):
    """Pack ROI prompts into (1, R, P, 2) points and (1, R, P) labels padded with -1."""
    n_max = max((len(r.points) for r in rois), default=1)
    points = torch.zeros(1, len(rois), n_max, 2)
    labels = torch.full((1, len(rois), n_max), -1, dtype=torch.long)
    for i, roi in enumerate(rois):
        pts = np.asarray(roi.points, dtype=np.float32).reshape(-1, 2)
        points[0, i, : len(pts)] = torch.from_numpy(pts)
        labels[0, i, : len(pts)] = torch.as_tensor(np.asarray(roi.labels, dtype=np.int64))
    return points.to(device), labels.to(device)


def _as_frame(frame: np.ndarray) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 2:
        raise ValueError(f"frames must be 2-D gray (H, W), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError("frame holds NaN or infinite values")
    return arr


class SAM2FlowEstimator:
    """Stream a video through SAM2Flow, one frame at a time, in constant memory.

    Parameters
    ----------
    model : SAM2Flow, optional
        A model; default: :func:`load_flow_model` (shipped weights) on ``device``.
    device : str
        Device used when loading the default model.
    iters : int, optional
        GRU refinement iterations (default: the model config's).
    span : int
        1 (default): the flow of each pair (t, t+1) alone. ``k > 1``: also the flow of the pair
        (t+1-k, t+1), which sees k times the displacement, divided by k, replaces the 1-frame flow
        where both are slow: ``w v_k + (1 - w) v_1`` with ``w = span_weight(v_k, v_1, span_speed)``
        (sub-pixel motion under photon noise). Twice the pair cost; the first k-1 pairs are plain.
    span_speed : float
        Speed scale (px/frame) of that weight.

    Notes
    -----
    Only the last ``span`` frames' features, the prompt tokens and the FIFO memory bank(s) are
    kept between steps. ``flow`` is the full field; ``roi_ids`` marks the predicted ROI
    pixels (argmax over ROI logits where the best logit > 0).
    """

    name = "sam2flow"

    def __init__(self, model: Optional[SAM2Flow] = None, device: str = "cpu", iters: Optional[int] = None,
                 span: int = 1, span_speed: float = SPAN_SPEED):
        if isinstance(span, bool) or int(span) != span or span < 1:
            raise ValueError(f"span must be an integer >= 1, got {span!r}")
        if not span_speed > 0:
            raise ValueError(f"span_speed must be > 0, got {span_speed!r}")
        self.span, self.span_speed = int(span), float(span_speed)
        self.model = (model if model is not None else load_flow_model(device=device)).eval()
        self.device = next(self.model.parameters()).device
        self.iters = iters
        self._prev: Optional[FrameFeatures] = None
        self._size: Optional[tuple[int, int]] = None
        self._index = 0
        self._prompts = None
        self._roi_ids = np.zeros(0, np.int32)
        self.bank = self.model.new_memory()
        self.span_bank = self.model.new_memory()  # memory of the (t+1-span, t+1) pairs
        self._history: deque = deque(maxlen=self.span)  # features of frames t+1-span .. t

    @property
    def max_displacement(self) -> float:
        """Reach of the correlation look-up in full-resolution px/frame (beyond it: no measurement)."""
        return self.model.cfg.reach * self.model.scale

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _encode(self, frame: np.ndarray) -> FrameFeatures:
        x = torch.from_numpy(frame)[None, None].to(self.device)
        x, _ = pad_to_stride(x, self.model.stride)
        return self.model.encode(x)

    def reset(self, first_frame: np.ndarray, rois: Sequence[RoiPrompt]) -> None:
        """Start a video: encode the first frame and the ROI prompts, clear the memory."""
        frame = _as_frame(first_frame)
        self._size = frame.shape
        self._index = 0
        self.bank = self.model.new_memory()
        self.span_bank = self.model.new_memory()
        self._history.clear()
        self._roi_ids = np.array([int(r.id) for r in rois], dtype=np.int32)
        with torch.inference_mode(), self._autocast():
            self._prev = self._encode(frame)
            self._history.append(self._prev)
            if len(rois):
                points, labels = prompts_to_tensors(rois, self.device)
                padded = tuple(self._prev.context.shape[-2:])
                size = (padded[0] * self.model.scale, padded[1] * self.model.scale)
                self._prompts = self.model.encode_prompts(points, labels, size)
            else:
                self._prompts = None

    def step(self, next_frame: np.ndarray) -> FlowStep:
        """Flow from the previous frame to ``next_frame`` plus the ROI id map."""
        if self._prev is None:
            raise ValueError("call reset(first_frame, rois) before step()")
        frame = _as_frame(next_frame)
        if frame.shape != self._size:
            raise ValueError(f"frame shape {frame.shape} differs from the first frame's {self._size}")
        h, w = self._size
        with torch.inference_mode(), self._autocast():
            cur = self._encode(frame)
            out = self.model.pair(self._prev, cur, self.bank, self._prompts, self.iters)
            flow = out.flows[-1][0, :, :h, :w].float().permute(1, 2, 0).cpu().numpy()
            logits = out.roi_logits[0, :, :h, :w].float().cpu().numpy()
            if self.span > 1 and len(self._history) == self.span:
                far = self.model.pair(self._history[0], cur, self.span_bank, self._prompts, self.iters)
                far_flow = far.flows[-1][0, :, :h, :w].float().permute(1, 2, 0).cpu().numpy() / self.span
                weight = span_weight(far_flow, flow, self.span_speed)
                flow = weight * far_flow + (1.0 - weight) * flow
        self._prev = cur
        self._history.append(cur)
        roi_ids = np.zeros((h, w), np.int32)
        if logits.shape[0]:
            best = logits.argmax(0)
            roi_ids = np.where(logits.max(0) > 0, self._roi_ids[best], 0).astype(np.int32)
        step = FlowStep(index=self._index, flow=np.ascontiguousarray(flow, dtype=np.float32), roi_ids=roi_ids)
        self._index += 1
        return step
