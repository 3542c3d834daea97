"""Readers, writers and the lazy ``FrameStack`` (no Qt, no torch).

>>> from napari_sam2med.io import FrameStack, open_stack, write_labels
"""

from .dicom import DicomSeries, read_dicom_series
from .lazy import LazySlices
from .normalize import normalize_slice, robust_window
from .readers import open_stack, read_array, read_spacing, stack_name
from .stack import FrameStack
from .writers import atomic_write, write_array, write_labels

__all__ = [
    "DicomSeries",
    "FrameStack",
    "LazySlices",
    "atomic_write",
    "normalize_slice",
    "open_stack",
    "read_array",
    "read_dicom_series",
    "read_spacing",
    "robust_window",
    "stack_name",
    "write_array",
    "write_labels",
]
