"""Fixtures for the OCTA tests: synthetic cases and the optional shared OCTA-500 data."""

from pathlib import Path

import pytest

from napari_sam2med.octa.synthetic import make_synthetic_octa

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LAYER_SEQ = SHARED_DATA / "octa500_layer_sequences"
PROJ_3D = SHARED_DATA / "octa500_projections_3d"


@pytest.fixture(scope="session")
def synthetic_case():
    return make_synthetic_octa(n_layers=4, size=96, n_vessels=4, seed=3)


def need(path: Path) -> Path:
    """Skip the calling test when ``path`` (shared data) is absent."""
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model():
    """sam2.1-tiny with random weights at 128 px (structure only: masks are meaningless)."""
    import torch

    sam2 = pytest.importorskip("napari_sam2med.sam2")
    torch.set_num_threads(1)  # the test machine is shared: one thread is ~10x faster than two here
    return sam2.load_model("sam2.1-tiny", image_size=128, random_init=True, device="cpu")
