"""OCTA segmentation pipelines (SAM-OCTA2 modes) as progress generators.

Every ``run_*`` function is a generator: it yields :class:`OctaProgress` (one
per propagated layer) and *returns* a list of napari layer-data tuples
``(data, {"name": ...}, "labels")``. Drive it with
``napari_sam2med.engine.run_to_end(gen)`` or ``result = yield from gen``.

Modes
-----
* layer sequence (:func:`run_layer_sequence`): objects from a reference
  annotation on layer K (RV: one object per vessel cluster; FAZ: one object),
  automatic prompts on K, propagation through the whole (L, H, W) sequence in
  both directions by SAM2's memory.
* sparse annotation (:func:`run_sparse`): label images on a few layers are
  given as mask prompts (or turned into point prompts), the rest is propagated.
* en-face projections (:func:`run_projection`): FULL, ILM_OPL and OPL_BM are a
  3-frame sequence of the same retina; prompts on frame 0, propagation, then
  the three per-frame label images are fused by **majority vote**: a pixel gets
  the label that at least 2 of the 3 frames agree on, else background (so an
  object pixel needs two votes; with three different answers it is background).
* manual prompts (:func:`run_manual`): points given by the caller / widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator, Iterable

import numpy as np

from .objects import objects_for_task
from .prompts import ObjectPrompts, PromptConfig, prompts_from_labels

LayerData = tuple[np.ndarray, dict, str]


@dataclass
class OctaProgress:
    """Progress of a pipeline: ``done`` of ``total`` steps; ``layer`` just finished."""

    stage: str
    done: int
    total: int
    layer: int | None = None


@dataclass
class OctaConfig:
    """Settings shared by the pipelines.

    Attributes
    ----------
    task : {"rv", "faz"}
        Retinal vessels (one object per vessel cluster) or the FAZ (one object).
    prompts : PromptConfig
        Automatic prompt counts, ring and seed.
    min_size : int
        Smallest vessel cluster kept as an object (pixels).
    cache_size : int
        Engine feature cache (frames).
    name : str
        Name of the result layer.
    """

    task: str = "rv"
    prompts: PromptConfig = field(default_factory=PromptConfig)
    min_size: int = 20
    cache_size: int = 8
    name: str = ""

    def __post_init__(self) -> None:
        if self.task not in ("rv", "faz"):
            raise ValueError(f"task must be 'rv' or 'faz', got {self.task!r}")

    @property
    def layer_name(self) -> str:
        return self.name or f"OCTA {self.task.upper()}"


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be an (L, H, W) stack, got shape {images.shape}")
    return images


def _new_session(model, images: np.ndarray, cache_size: int):
    from ..engine import Session
    from ..io import FrameStack

    return Session(model, FrameStack(images), cache_size=cache_size)


def _propagate(session, shape: tuple[int, int, int]) -> Generator[OctaProgress, None, np.ndarray]:
    """Propagate all objects both ways; yield per layer; return int32 (L, H, W)."""
    out = np.zeros(shape, np.int32)
    gen = session.propagate(direction="both", out=out)
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        yield OctaProgress("propagate", int(step.done), int(step.total), int(step.slice_idx))
    return out if result is None else np.asarray(result, np.int32)


def automatic_prompts(reference: np.ndarray, config: OctaConfig) -> tuple[np.ndarray, dict[int, ObjectPrompts]]:
    """Objects of a 2D reference annotation and their automatic prompts.

    Returns
    -------
    objects : np.ndarray
        int32 (H, W) object ids.
    prompts : dict
        ``{obj_id: ObjectPrompts}``.
    """
    objects = objects_for_task(reference, config.task, min_size=config.min_size)
    if not objects.any():
        raise ValueError("the reference annotation holds no object to prompt")
    return objects, prompts_from_labels(objects, config.prompts)


def segment_with_points(
    model,
    images: np.ndarray,
    points: dict[int, dict[int, ObjectPrompts]],
    cache_size: int = 8,
) -> Generator[OctaProgress, None, np.ndarray]:
    """Add ``{obj_id: {layer: ObjectPrompts}}`` to a new session and propagate."""
    images = _check_images(images)
    session = _new_session(model, images, cache_size)
    for obj_id, per_layer in points.items():
        for layer, prompt in per_layer.items():
            if len(prompt.points):
                session.add_points(int(obj_id), int(layer), prompt.points, prompt.labels)
    labels = yield from _propagate(session, images.shape)
    return labels


def run_layer_sequence(
    model, images: np.ndarray, reference: np.ndarray, ref_layer: int, config: OctaConfig
) -> Generator[OctaProgress, None, list[LayerData]]:
    """Layer-sequence mode: automatic prompts on ``ref_layer`` from ``reference`` (H, W)."""
    images = _check_images(images)
    if not 0 <= ref_layer < images.shape[0]:
        raise ValueError(f"ref_layer {ref_layer} outside 0..{images.shape[0] - 1}")
    if np.asarray(reference).shape[:2] != images.shape[1:]:
        raise ValueError(f"reference shape {np.asarray(reference).shape} differs from layers {images.shape[1:]}")
    _, prompts = automatic_prompts(reference, config)
    yield OctaProgress("prompts", 0, images.shape[0], ref_layer)
    points = {obj_id: {ref_layer: p} for obj_id, p in prompts.items()}
    labels = yield from segment_with_points(model, images, points, config.cache_size)
    meta = {"object_ids": sorted(prompts), "prompt_layers": [ref_layer], "task": config.task}
    return [(labels, {"name": config.layer_name, "metadata": meta}, "labels")]


def run_sparse(
    model,
    images: np.ndarray,
    annotations: dict[int, np.ndarray],
    config: OctaConfig,
    as_masks: bool = True,
) -> Generator[OctaProgress, None, list[LayerData]]:
    """Sparse-annotation mode: ``{layer: int labels (H, W)}`` on a few layers.

    Object ids must mean the same object on every annotated layer (they are
    used as given). ``as_masks``: each object's mask is a mask prompt;
    otherwise automatic point prompts are drawn from it.
    """
    images = _check_images(images)
    if not annotations:
        raise ValueError("sparse mode needs at least one annotated layer")
    session = _new_session(model, images, config.cache_size)
    object_ids: set[int] = set()
    for layer, labels in annotations.items():
        labels = np.asarray(labels)
        if not 0 <= int(layer) < images.shape[0] or labels.shape != images.shape[1:]:
            raise ValueError(f"annotation for layer {layer} does not fit a stack of shape {images.shape}")
        if as_masks:
            for obj_id in (int(v) for v in np.unique(labels) if v > 0):
                session.set_mask(obj_id, int(layer), labels == obj_id)
                object_ids.add(obj_id)
        else:
            for obj_id, p in prompts_from_labels(labels, config.prompts).items():
                session.add_points(obj_id, int(layer), p.points, p.labels)
                object_ids.add(obj_id)
    if not object_ids:
        raise ValueError("the sparse annotations hold no object")
    labels = yield from _propagate(session, images.shape)
    meta = {"object_ids": sorted(object_ids), "prompt_layers": sorted(int(k) for k in annotations),
            "task": config.task}
    return [(labels, {"name": config.layer_name, "metadata": meta}, "labels")]


def fuse_majority(frame_labels: np.ndarray) -> np.ndarray:
    """Fuse 3 label images into one: the label at least 2 frames agree on, else 0."""
    frame_labels = np.asarray(frame_labels)
    if frame_labels.ndim != 3 or frame_labels.shape[0] != 3:
        raise ValueError(f"majority fusion needs (3, H, W) labels, got {frame_labels.shape}")
    a, b, c = frame_labels.astype(np.int32)
    return np.where(a == b, a, np.where(a == c, a, np.where(b == c, b, 0))).astype(np.int32)


def run_projection(
    model, projections: np.ndarray, reference: np.ndarray, config: OctaConfig
) -> Generator[OctaProgress, None, list[LayerData]]:
    """En-face mode: prompt frame 0 (FULL), propagate to ILM_OPL and OPL_BM, fuse.

    Returns the fused (H, W) labels first, then the (3, H, W) per-frame labels.
    """
    projections = _check_images(projections)
    if projections.shape[0] != 3:
        raise ValueError(f"projection mode needs 3 frames (FULL, ILM_OPL, OPL_BM), got {projections.shape[0]}")
    frames = yield from run_layer_sequence(model, projections, reference, 0, config)
    per_frame, meta = frames[0][0], frames[0][1]["metadata"]
    fused = fuse_majority(per_frame)
    yield OctaProgress("fuse", 3, 3, None)
    return [
        (fused, {"name": f"{config.layer_name} (fused)", "metadata": meta}, "labels"),
        (per_frame, {"name": f"{config.layer_name} (per projection)", "metadata": meta}, "labels"),
    ]


def run_manual(
    model,
    images: np.ndarray,
    clicks: Iterable[tuple[int, int, float, float, int]],
    config: OctaConfig,
) -> Generator[OctaProgress, None, list[LayerData]]:
    """Manual mode: clicks ``(obj_id, layer, row, col, label)`` (label 1 positive, 0 negative)."""
    images = _check_images(images)
    grouped: dict[int, dict[int, list]] = {}
    for obj_id, layer, row, col, label in clicks:
        if not 0 <= int(layer) < images.shape[0]:
            raise ValueError(f"click on layer {layer} outside 0..{images.shape[0] - 1}")
        grouped.setdefault(int(obj_id), {}).setdefault(int(layer), []).append((row, col, int(label)))
    if not grouped:
        raise ValueError("manual mode needs at least one click")
    points = {
        obj: {
            layer: ObjectPrompts(
                points=np.asarray([c[:2] for c in cs], np.float32),
                labels=np.asarray([c[2] for c in cs], np.int32),
            )
            for layer, cs in per_layer.items()
        }
        for obj, per_layer in grouped.items()
    }
    labels = yield from segment_with_points(model, images, points, config.cache_size)
    meta = {"object_ids": sorted(points), "prompt_layers": sorted({l for p in points.values() for l in p}),
            "task": config.task}
    return [(labels, {"name": config.layer_name, "metadata": meta}, "labels")]
