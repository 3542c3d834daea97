"""MedSAM2 entries load strictly from a file in the MedSAM2 layout, downloaded and checked like any entry.

MedSAM2 (bowang-lab/MedSAM2) saves its trainer checkpoint ``{"model": state_dict, "optimizer": ...,
"epoch": ..., ...}`` of a SAM2.1-tiny model at 512 px (sam2.1_hiera_t512.yaml), with the official
key names. A synthetic file in that layout is served locally and loaded through the registry.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading

import pytest
import torch

from napari_sam2med.sam2 import build_model, configs, get_config, load_model
from napari_sam2med.sam2 import checkpoint as ckpt
from napari_sam2med.sam2.weights import WeightsSpec

pytestmark = pytest.mark.slow  # one 39M-parameter model built twice (~10 s on 2 cores)


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(ckpt.OFFLINE_ENV, raising=False)
    folder = tmp_path / "srv"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _medsam2_file(path, state):
    """Write ``state`` the way MedSAM2's trainer does (extra non-tensor entries next to "model")."""
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1]}]},
                "epoch": 75, "loss": {}, "steps": {"train": 1000, "val": 0}, "time_elapsed": 3600.0,
                "best_meter_values": {}}, path)


def test_medsam2_downloads_verifies_and_loads_strictly(tmp_path, served, monkeypatch):
    torch.set_num_threads(1)
    base, folder = served
    torch.manual_seed(0)
    reference = build_model(get_config("medsam2-latest"))
    state = {k: v.half() for k, v in reference.state_dict().items()}  # fp16 halves the test file
    _medsam2_file(folder / "MedSAM2_latest.pt", state)
    spec = WeightsSpec(f"{base}/MedSAM2_latest.pt", "MedSAM2_latest.pt", ckpt.sha256_of(folder / "MedSAM2_latest.pt"))
    monkeypatch.setitem(configs.MODEL_CONFIGS, "medsam2-latest",
                        dataclasses.replace(configs.MODEL_CONFIGS["medsam2-latest"], weights=spec))
    monkeypatch.setenv(ckpt.CACHE_ENV, str(tmp_path / "cache"))

    model = load_model("medsam2-latest", device="cpu", progress=False)
    assert model.config.image_size == 512 and model.config.name == "medsam2-latest"
    got = model.state_dict()
    assert list(got) == list(state)
    for key in ("image_encoder.trunk.patch_embed.proj.weight", "sam_mask_decoder.iou_prediction_head.layers.0.weight",
                "memory_encoder.out_proj.weight", "no_obj_embed_spatial"):
        torch.testing.assert_close(got[key], state[key].float(), rtol=0, atol=0)

    # strict: a file with one extra (e.g. a MedSAM2 dev-branch boundary module) or one missing key is refused
    extra = dict(state, **{"boundary_module.conv.weight": torch.zeros(1)})
    _medsam2_file(tmp_path / "extra.pt", extra)
    with pytest.raises(ValueError, match="does not match medsam2-latest.*boundary_module"):
        load_model("medsam2-latest", checkpoint=tmp_path / "extra.pt", device="cpu")
    missing = dict(state)
    missing.pop("obj_ptr_proj.layers.0.weight")
    _medsam2_file(tmp_path / "missing.pt", missing)
    with pytest.raises(ValueError, match="does not match medsam2-latest.*obj_ptr_proj"):
        load_model("medsam2-latest", checkpoint=tmp_path / "missing.pt", device="cpu")
