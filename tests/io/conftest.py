"""Fixtures for the geometry tests: an oblique NIfTI and an oblique DICOM series."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _geometry_data (tests use importlib mode)

from _geometry_data import write_dicom_series, write_oblique_nifti  # noqa: E402


@pytest.fixture
def oblique_nifti(tmp_path):
    """Path of an oblique, translated, anisotropic NIfTI volume (X, Y, Z) = (20, 16, 10)."""
    return write_oblique_nifti(tmp_path / "ct.nii.gz")


@pytest.fixture
def oblique_dicom(tmp_path):
    """(folder, positions (n, 3) LPS in volume order, rotation) of a 6-slice oblique series."""
    pytest.importorskip("pydicom")
    folder = tmp_path / "series"
    folder.mkdir()
    positions, rot = write_dicom_series(folder)
    return SimpleNamespace(folder=folder, positions=positions, rotation=rot, shape=(6, 12, 10))
