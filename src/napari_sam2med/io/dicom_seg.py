"""DICOM-SEG output referencing the source DICOM series (highdicom).

A labels volume ``(Z, Y, X)`` computed on a DICOM series (read by
:func:`napari_sam2med.io.read_dicom_series`, slices in volume order) becomes one
Segmentation instance: a binary segment per object id (segment numbers 1..K in
increasing id order, labelled ``"object <id>"``), frames referencing the source
instances and carrying their ImagePositionPatient, the source
FrameOfReferenceUID, and the propagation axis in the SeriesDescription.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .geometry import Geometry

SEG_SERIES_NUMBER = 9901


def _source_datasets(geometry: Geometry) -> list[Any]:
    import pydicom

    if geometry.source != "dicom" or not geometry.source_files:
        raise ValueError(
            f"a DICOM-SEG needs a DICOM series as input (this image came from {geometry.source}); "
            "write .nii.gz or .nrrd instead"
        )
    datasets = []
    for path in geometry.source_files:
        if not Path(path).is_file():
            raise ValueError(f"source DICOM file is gone: {path}; a DICOM-SEG must reference it")
        datasets.append(pydicom.dcmread(path, stop_before_pixels=True))
    return datasets


def segmentation(labels: np.ndarray, geometry: Geometry, axis: Any = None) -> Any:
    """A ``highdicom.seg.Segmentation`` of ``labels`` over the series ``geometry`` came from.

    Parameters
    ----------
    labels : ndarray
        Integer ``(Z, Y, X)`` in the series' volume order (0 = background).
    geometry : Geometry
        The source series' geometry (``source == "dicom"``).
    axis : Axis or str, optional
        Propagation axis, recorded in the SeriesDescription.
    """
    import highdicom as hd
    from highdicom.sr.coding import CodedConcept
    from pydicom.sr.codedict import codes

    from .. import __version__

    labels = np.asarray(labels)
    geometry.check_labels(labels.shape)
    if labels.dtype.kind not in "uib":
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    ids = [int(v) for v in np.unique(labels) if v != 0]
    if ids and min(ids) < 0:
        raise ValueError("labels must be non-negative")
    # Nothing segmented: still a valid SEG (one empty segment), so a run always leaves its output.
    ids = ids or [1]
    sources = _source_datasets(geometry)
    # Segment numbers must run 1..K; object ids can be any positive integers.
    lookup = np.zeros(max(ids) + 1, dtype=np.uint16)
    lookup[ids] = np.arange(1, len(ids) + 1)
    mapped = lookup[labels.astype(np.int64)]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="napari-sam2med", version=str(__version__),
        family=codes.cid7162.ArtificialIntelligence,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=f"object {obj_id}",
            segmented_property_category=codes.cid7150.Tissue,
            segmented_property_type=CodedConcept("85756007", "SCT", "Tissue"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, obj_id in enumerate(ids, start=1)
    ]
    name = getattr(axis, "value", axis)
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mapped,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="napari-sam2med",
        manufacturer_model_name="SAM2 propagation",
        software_versions=str(__version__),
        device_serial_number="0",
        series_description=f"SAM2 labels ({name or 'axial'})",
        omit_empty_frames=True,
    )


def write_dicom_seg(tmp: Path, labels: np.ndarray, geometry: Geometry, axis: Any = None) -> None:
    """Write the Segmentation of :func:`segmentation` to ``tmp``."""
    segmentation(labels, geometry, axis).save_as(str(tmp))
