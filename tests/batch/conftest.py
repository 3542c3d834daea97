"""Batch fixtures: a saved random-init test checkpoint (batch and propagate load the same file)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # batch_testdata


@pytest.fixture(scope="session")
def test_checkpoint(tmp_path_factory) -> Path:
    """Random weights of the test model, saved once: batch and propagate load the same file."""
    import torch

    from napari_sam2med.sam2 import build_model
    from napari_sam2med.sam2.checkpoint import save_checkpoint
    from napari_sam2med.sam2.configs import get_config

    path = tmp_path_factory.mktemp("ckpt") / "sam2.1-test-random.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return save_checkpoint(build_model(get_config("sam2.1-test", 64)), path)
