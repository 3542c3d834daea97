"""Readers, writers and the lazy ``FrameStack`` (no Qt, no torch).

>>> from napari_sam2med.io import FrameStack, open_stack, write_labels
"""

from .axes import Axis, AxisView, parse_axis
from .dicom import DicomSeries, read_dicom_series
from .geometry import Geometry
from .lazy import LazySlices
from .normalize import normalize_slice, robust_window
from .readers import open_stack, read_array, read_geometry, read_labels_for, read_spacing, read_volume, stack_name
from .stack import FrameStack
from .writers import atomic_write, write_array, write_labels

__all__ = [
    "Axis",
    "AxisView",
    "DicomSeries",
    "FrameStack",
    "Geometry",
    "LazySlices",
    "atomic_write",
    "normalize_slice",
    "open_stack",
    "parse_axis",
    "read_array",
    "read_geometry",
    "read_labels_for",
    "read_volume",
    "read_dicom_series",
    "read_spacing",
    "robust_window",
    "stack_name",
    "write_array",
    "write_labels",
]
