"""The model registry (``sam2.list_models()``): every entry is complete, matches its published size,
and has exactly the official state-dict layout. Parametrized over the registry itself (timm's pattern)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pytest
import torch

from napari_sam2med.engine.preprocess import IMAGENET_MEAN, IMAGENET_STD
from napari_sam2med.sam2 import MODEL_NAMES, build_model, get_config, list_models

MODELS = list_models()
IDS = [c.name for c in MODELS]
#: Hiera stages -> the size letter of the official YAML (how the official repo names its configs).
_YAML_SIZE = {(1, 2, 7, 2): "t", (1, 2, 11, 2): "s", (2, 3, 16, 3): "b+", (2, 6, 36, 4): "l"}


def _official_yaml(cfg) -> str:
    prefix = "sam2.1" if cfg.is_v21 else "sam2"
    return f"configs/{prefix}/{prefix}_hiera_{_YAML_SIZE[cfg.hiera.stages]}.yaml"


def test_registry_lists_official_and_medsam2():
    assert [c.name for c in MODELS] == list(MODEL_NAMES)
    assert {n for n in MODEL_NAMES if re.match(r"sam2(\.1)?-", n)} == {
        f"{v}-{s}" for v in ("sam2", "sam2.1") for s in ("tiny", "small", "base-plus", "large")}
    # Our own trained model ships in the package (the offline choice).
    assert "sam2med-small-ct" in MODEL_NAMES
    assert {n for n in MODEL_NAMES if n.startswith("medsam2")} == {
        "medsam2-latest", "medsam2-ct-lesion", "medsam2-mri-liver-lesion", "medsam2-us-heart"}
    assert "sam2.1-test" in {c.name for c in list_models(include_test=True)} - set(MODEL_NAMES)


@pytest.mark.parametrize("cfg", MODELS, ids=IDS)
def test_entry_is_complete(cfg):
    w = cfg.weights
    url = urlparse(w.url)
    if w.url.startswith("package:"):  # weights shipped in the package: always pinned
        assert PurePosixPath(w.url[len("package:"):]).name == w.filename
        assert re.fullmatch(r"[0-9a-f]{64}", w.sha256 or ""), cfg.name
    else:
        assert url.scheme == "https" and PurePosixPath(url.path).name == w.filename
    if url.netloc == "dl.fbaipublicfiles.com":  # every official file has a pinned, published hash
        assert re.fullmatch(r"[0-9a-f]{64}", w.sha256 or ""), cfg.name
    else:  # MedSAM2: no published hash found (trust on first use, documented in sam2/weights.py)
        assert w.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", w.sha256)
    assert cfg.card and cfg.summary and cfg.image_size % 32 == 0
    # the engine standardises with ImageNet statistics; an entry that needs others must be wired there first
    assert cfg.normalization.mean == IMAGENET_MEAN and cfg.normalization.std == IMAGENET_STD
    if cfg.name.startswith("medsam2"):
        assert cfg.image_size == 512 and cfg.is_v21 and cfg.hiera == get_config("sam2.1-tiny").hiera
    assert get_config(cfg.name) is cfg


@pytest.mark.parametrize("cfg", MODELS, ids=IDS)
def test_parameter_count_matches_published(cfg):
    with torch.device("meta"):  # shapes only, nothing allocated
        model = build_model(cfg)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(cfg.params_m, rel=0.005)


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("cfg", MODELS, ids=IDS)
def test_state_dict_layout_equals_official(cfg):
    if cfg.hiera.stages not in _YAML_SIZE or cfg.slm is not None:
        pytest.skip(f"{cfg.name} has no official counterpart")
    pytest.importorskip("hydra")
    build_sam = pytest.importorskip("sam2.build_sam")
    official = build_sam.build_sam2(_official_yaml(cfg), ckpt_path=None, device="cpu", mode="eval",
                                    hydra_overrides_extra=[f"++model.image_size={cfg.image_size}"])
    with torch.device("meta"):  # ours: shapes only, nothing allocated
        ours = build_model(cfg)
    ref = {k: tuple(v.shape) for k, v in official.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == ref
