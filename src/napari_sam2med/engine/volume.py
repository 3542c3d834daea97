"""Segment one whole volume from its prompts into a label file: the path shared by
``sam2med propagate`` and ``sam2med batch`` (so both give identical labels).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Generator

import numpy as np

from ..io import FrameStack, write_labels
from ..io.writers import atomic_write
from .crop import propagate_cropped, resolve_context
from .prompts import PromptSet
from .propagation import PropagationStep
from .session import Session

__all__ = ["LABEL_OUT_SUFFIXES", "label_dtype", "label_suffix", "open_volume", "check_output", "segment_to_file",
           "write_label_file"]

#: Label outputs a volume can be written to (the suffix picks the format).
LABEL_OUT_SUFFIXES = (".tif", ".tiff", ".zarr", ".nii", ".nii.gz", ".nrrd", ".dcm")


def label_suffix(path: str | Path) -> str:
    """The label format suffix of ``path`` (``.nii.gz`` counts as one), or ``ValueError``."""
    name = Path(path).name.lower()
    for suffix in sorted(LABEL_OUT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"labels output {Path(path).name!r} must end in one of {', '.join(LABEL_OUT_SUFFIXES)}")


def label_dtype(max_id: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids up to ``max_id`` (int32 beyond uint16)."""
    return np.dtype(np.uint8 if max_id < 256 else np.uint16 if max_id < 65536 else np.int32)


def write_label_file(path: str | Path, labels: np.ndarray, geometry=None, axis=None) -> Path:
    """Write a label volume atomically with ``io.write_labels``; NIfTI/NRRD/DICOM-SEG outputs are
    placed in ``geometry`` (the input's scanner space) and record the propagation ``axis``."""
    return write_labels(path, labels, geometry=geometry, axis=axis)


def open_volume(path: str | Path, *, window: tuple[float, float] | None = None, axis: str = "axial") -> FrameStack:
    """Open a volume the way ``propagate`` and ``batch`` segment it: lazily, with its scanner geometry,
    seen as slices perpendicular to ``axis`` (grayscale volumes; colour stacks only ``"axial"``)."""
    from ..io import open_stack

    stack = open_stack(path, window=window)
    if stack.n_channels == 1:
        return stack.along(axis)  # lazy view; the identity for axially stored volumes
    if axis != "axial":
        raise ValueError("--axis coronal/sagittal needs a grayscale volume")
    return stack


def check_output(out_path: str | Path, stack: FrameStack) -> str:
    """Check before any work that ``out_path``'s format can hold labels of ``stack`` (e.g. a ``.dcm``
    needs a DICOM input); returns the suffix. Raises ``ValueError``."""
    from ..io.label_formats import scanner_geometry

    suffix = label_suffix(out_path)
    view = getattr(stack, "axis_view", None)
    scanner_geometry(suffix, view.original_shape(stack.shape) if view else stack.shape,
                     getattr(stack, "geometry", None))
    return suffix


def segment_to_file(model, stack: FrameStack, prompts: PromptSet, out_path: str | Path, *,
                    direction: str = "both", memory: str = "sam2",
                    engine: str = "torch", crop_context: float | None = None) -> Generator[PropagationStep, None, Path]:
    """Propagate every prompted object through ``stack`` and write the labels to ``out_path``.

    Parameters
    ----------
    model : SAM2Model
        The network.
    stack : FrameStack
        The volume (read lazily, slice by slice).
    prompts : PromptSet
        Prompts validated against ``stack``.
    out_path : str or Path
        ``.tif/.tiff``, ``.zarr`` (streamed slice by slice unless resliced), ``.nii``,
        ``.nii.gz``, ``.nrrd`` (in the stack's geometry) or ``.dcm`` (DICOM-SEG of a DICOM input).
    direction : str
        ``"forward"``, ``"backward"`` or ``"both"``.
    memory : str
        ``"sam2"`` (SAM2's memory) or ``"slm"`` (SLM-SAM2's short-long memory), see :class:`.Session`.
    engine : str
        Image-encoder engine ``"torch"``, ``"onnx"`` or ``"auto"``, see :class:`.Session`.
    crop_context : float, optional
        Crop around the prompt (:mod:`.crop`): each object is segmented on its own in a window this
        many times its prompt box; None (default): the model's ``config.crop_context``; 0: whole slices.

    Yields
    ------
    PropagationStep
        One per slice written.

    Returns
    -------
    Path
        ``out_path``, written atomically: a failure or an abandoned generator leaves no file.
    """
    out_path = Path(out_path)
    suffix = label_suffix(out_path)
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {out_path.parent}")
    # A stack made by ``FrameStack.along(axis)`` is a transposed view: labels go back to the
    # source voxel order and into the source geometry (``io.axes``, ``io.geometry``).
    view, geometry = getattr(stack, "axis_view", None), getattr(stack, "geometry", None)
    context = resolve_context(model, crop_context)
    if context is None:
        session = Session(model, stack, memory=memory, engine=engine)
        session.prompts = prompts

    def run(out):
        if context is None:
            return (yield from session.propagate(direction=direction, out=out))
        return (yield from propagate_cropped(model, stack, prompts, out, context=context, direction=direction,
                                             memory=memory, engine=engine))

    shape = (len(stack), *stack.frame_shape)
    dtype = label_dtype(max(prompts.object_ids))
    if suffix != ".zarr" or (view is not None and not view.identity):
        labels = np.zeros(shape, dtype=dtype)
        yield from run(labels)
        if view is not None:
            labels = view.to_original(labels)
        return write_label_file(out_path, labels, geometry, None if view is None else view.axis)

    import zarr

    # Stream into a hidden partial store, then publish it through atomic_write (a rename).
    partial = out_path.parent / f".{out_path.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        target = zarr.create_array(store=str(partial), shape=shape, dtype=dtype, chunks=(1, *shape[1:]))
        yield from run(target)
        return atomic_write(out_path, lambda tmp: os.replace(partial, tmp))
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
