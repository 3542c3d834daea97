"""Every official configuration (SAM2 / SAM2.1, four sizes) has exactly our state-dict layout."""

from __future__ import annotations

import pytest
import torch

from napari_sam2med.sam2 import MODEL_NAMES, build_model, get_config

pytestmark = pytest.mark.oracle

OFFICIAL = {
    "sam2.1-tiny": "configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1-small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1-base-plus": "configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1-large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2-tiny": "configs/sam2/sam2_hiera_t.yaml", "sam2-small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2-base-plus": "configs/sam2/sam2_hiera_b+.yaml", "sam2-large": "configs/sam2/sam2_hiera_l.yaml",
}


def test_registry_covers_the_eight_official_models():
    assert set(MODEL_NAMES) == set(OFFICIAL)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_state_dict_layout_equals_official(name):
    build_sam = pytest.importorskip("sam2.build_sam")
    official = build_sam.build_sam2(OFFICIAL[name], ckpt_path=None, device="cpu", mode="eval")
    with torch.device("meta"):  # ours: shapes only, nothing allocated
        ours = build_model(get_config(name))
    ref = {k: tuple(v.shape) for k, v in official.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == ref
    size = {"tiny": "tiny", "small": "small", "base-plus": "base_plus", "large": "large"}[name.split("-", 1)[1]]
    prefix = "sam2.1_hiera_" if name.startswith("sam2.1") else "sam2_hiera_"
    assert get_config(name).checkpoint_name == f"{prefix}{size}.pt"
