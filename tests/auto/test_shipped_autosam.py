"""The shipped AutoSAM2 FAZ prompt encoder: pinned file, strict load, SAM2 refusal, and (with
../shared/data) a real no-click FAZ segmentation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from napari_sam2med.auto import shipped
from napari_sam2med.auto.predict import predict_mask
from napari_sam2med.auto.prompt_net import FORMAT, PromptNetMismatch, load_prompt_net
from napari_sam2med.sam2 import build_model, get_config, load_model
from napari_sam2med.sam2.checkpoint import sha256_of

NAME = "autosam2-faz"


@pytest.fixture(scope="module")
def sam2():
    return load_model(shipped.shipped_prompt_encoder_info(NAME).sam2, device="cpu", offline=True)


def test_shipped_file_is_pinned_small_and_strictly_loadable():
    assert NAME in shipped.list_shipped_prompt_encoders()
    entry = shipped.shipped_prompt_encoder_info(NAME)
    path = shipped.shipped_prompt_encoder_path(NAME)
    assert sha256_of(path) == entry.sha256 and path.stat().st_size == entry.size_bytes
    assert entry.size_bytes < 10e6
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["format"] == FORMAT and blob["sam2"]["name"] == entry.sam2 == "sam2med-small-ct"
    assert len(blob["sam2"]["checkpoint_sha256"]) == 64
    assert all(v.dtype == torch.float16 for v in blob["prompt_encoder"].values() if v.is_floating_point())
    net, rec = load_prompt_net(path)  # strict load_state_dict
    assert net.config.crop_context > 0 and net.aux_head is not None
    assert rec["checkpoint_sha256"] == get_config(entry.sam2).weights.sha256  # trained against the shipped SAM2


def test_names_paths_and_a_replaced_file(tmp_path, monkeypatch):
    assert shipped.resolve_prompt_encoder(NAME) == shipped.shipped_prompt_encoder_path(NAME)
    with pytest.raises(ValueError, match="unknown prompt encoder 'nope'"):
        shipped.resolve_prompt_encoder("nope")
    with pytest.raises(ValueError, match="unknown prompt encoder"):
        shipped.load_shipped_prompt_encoder("nope")
    copy = tmp_path / "autosam2_faz_v1.pt"
    shutil.copy(shipped.shipped_prompt_encoder_path(NAME), copy)
    assert shipped.resolve_prompt_encoder(copy) == copy
    with open(copy, "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(shipped, "_file", lambda entry: copy)
    with pytest.raises(ValueError, match="pinned SHA-256"):
        shipped.load_shipped_prompt_encoder(NAME)


def test_loads_against_its_sam2_and_refuses_others(sam2):
    net, rec = shipped.load_shipped_prompt_encoder(NAME, sam2)
    assert rec["name"] == "sam2med-small-ct"
    torch.manual_seed(0)
    with pytest.raises(PromptNetMismatch, match="other 'sam2med-small-ct' weights"):
        shipped.load_shipped_prompt_encoder(NAME, build_model(get_config("sam2med-small-ct")))  # random weights
    torch.manual_seed(0)
    with pytest.raises(PromptNetMismatch, match="was trained against SAM2 'sam2med-small-ct'"):
        shipped.load_shipped_prompt_encoder(NAME, build_model(get_config("sam2.1-test")))


@pytest.mark.shared_data
def test_segments_a_faz_without_clicks(sam2, shared_data):
    from napari_sam2med.auto.training import AutoTrainConfig, new_prompt_net
    from napari_sam2med.engine.metrics import dice
    from napari_sam2med.octa.datasets import read_ground_truth, read_projections

    root = shared_data / "octa500_projections_3d" / "OCTA_6M"
    img = read_projections(root, "10002").images[1].astype(np.float32) / 255.0
    gt = read_ground_truth(root, "10002", "FAZ")
    net, _ = shipped.load_shipped_prompt_encoder(NAME, sam2)
    mask, score = predict_mask(sam2, net, img)
    torch.manual_seed(0)
    cfg = AutoTrainConfig(crop_context=net.config.crop_context, sparse_tokens=net.config.sparse_tokens,
                          width=net.config.width, tta=1)
    untrained = new_prompt_net(sam2, cfg).eval()
    d, d0 = dice(mask, gt), dice(predict_mask(sam2, untrained, img)[0], gt)
    assert d >= 0.75 and d0 < 0.3, (d, d0)
    assert score > 0
