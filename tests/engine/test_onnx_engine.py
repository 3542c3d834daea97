"""The ONNX Runtime image-encoder engine: exactness, export cache, corruption, fallback, selection."""

from __future__ import annotations

import logging
import shutil
import sys

import numpy as np
import pytest
import torch

import oracle  # tests/oracle.py
from napari_sam2med.engine import Session, onnx_engine, run_to_end
from napari_sam2med.engine.encoders import AutoEncoder, EngineKind, TorchEncoder, make_encoder
from napari_sam2med.sam2 import build_model, get_config

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SIZE = 128


def _feature_diff(a, b) -> float:
    pairs = [(a.vision, b.vision), (a.vision_pos, b.vision_pos), (a.high_res[0], b.high_res[0]),
             (a.high_res[1], b.high_res[1])]
    for p, q in pairs:
        assert p.shape == q.shape
    return max((p.float() - q.float()).abs().max().item() for p, q in pairs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random-init test model, exported once into a private cache folder."""
    torch.manual_seed(0)
    model = build_model(get_config("sam2.1-test", SIZE)).eval()
    oracle.perturb_(model, seed=1)  # non-degenerate masks (random init alone gives near-zero logits)
    folder = tmp_path_factory.mktemp("sam2med-cache") / "onnx"  # the layout of cache_dir()/onnx
    folder.mkdir()
    model.requires_grad_(False)  # frozen, and caches filled, as in an inference session
    TorchEncoder(model)(torch.zeros(1, 3, SIZE, SIZE))
    with torch.inference_mode():  # sessions encode their first slice under inference mode
        enc = onnx_engine.OnnxEncoder(model, folder=folder, threads=1)
    return model, folder, enc


@pytest.fixture
def cache_env(exported, monkeypatch):
    """Sessions use the module's export cache (``$SAM2MED_CACHE/onnx``)."""
    _, folder, _ = exported
    monkeypatch.setenv("SAM2MED_CACHE", str(folder.parent))
    assert onnx_engine.onnx_cache_dir() == folder
    return folder


def test_exact_mode_matches_pytorch(exported):
    model, _, enc = exported
    x = torch.randn(2, 3, SIZE, SIZE)  # batch 2: the graph has batch 1, the encoder loops
    got, ref = enc(x), TorchEncoder(model)(x)
    assert _feature_diff(got, ref) <= 1e-3
    # The inputs matter (not a constant graph): two images give different features.
    assert (got.vision[0] - got.vision[1]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="exported for 128 px"):
        enc(torch.randn(1, 3, 64, 64))


def test_cache_hit_does_not_export(exported, monkeypatch):
    model, folder, enc = exported
    monkeypatch.setattr(onnx_engine, "export_encoder", lambda *a: pytest.fail("exported again"))
    again = onnx_engine.OnnxEncoder(model, folder=folder, threads=1)
    assert again.path == enc.path
    assert sorted(p.name for p in folder.iterdir()) == [enc.path.name, enc.path.name + ".sha256"]


def test_key_depends_on_weights_size_and_exporter(exported):
    model, _, enc = exported
    key = onnx_engine.export_key(model)
    assert key.filename == enc.path.name
    other = build_model(get_config("sam2.1-test", SIZE)).eval()
    other.load_state_dict(model.state_dict())
    assert onnx_engine.export_key(other) == key  # same weights, same file
    assert not any(p.requires_grad for p in model.parameters())  # the export left the model as it was
    with torch.no_grad():
        other.sam_mask_decoder.conv_s0.bias.add_(1e-3)  # conv_s0 is part of the exported graph
    assert onnx_engine.export_key(other).filename != key.filename
    small = build_model(get_config("sam2.1-test", 64)).eval()
    small.load_state_dict(model.state_dict())
    assert onnx_engine.export_key(small).filename != key.filename
    assert onnx_engine.ExportKey(key.model, key.weights, key.image_size, "torch0-x").filename != key.filename


@pytest.mark.parametrize("damage", ["weights-changed", "garbage-with-matching-checksum"])
def test_corrupt_cache_is_reexported(exported, tmp_path, monkeypatch, caplog, damage):
    model, folder, enc = exported
    good = enc.path.read_bytes()
    target = tmp_path / enc.path.name
    if damage == "weights-changed":  # a valid ONNX file that onnxruntime would run: only the checksum tells
        import onnx
        from onnx import numpy_helper

        proto = onnx.load(str(enc.path))
        init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.5, init.name))
        onnx.save(proto, str(target))
        shutil.copy(onnx_engine.sidecar_path(enc.path), onnx_engine.sidecar_path(target))
    else:  # checksum fine, but onnxruntime cannot load it
        target.write_bytes(b"not an onnx model" * 100)
        onnx_engine.sidecar_path(target).write_text(onnx_engine.sha256_of(target) + "  x\n")
    calls = []

    def fake_export(m, path):  # the real export is tested above; here only its reuse matters
        calls.append(path)
        path.write_bytes(good)

    monkeypatch.setattr(onnx_engine, "export_encoder", fake_export)
    with caplog.at_level(logging.WARNING):
        fresh = onnx_engine.OnnxEncoder(model, folder=tmp_path, threads=1)
    assert len(calls) == 1
    assert "exporting it again" in caplog.text
    assert target.read_bytes() == good
    x = torch.randn(1, 3, SIZE, SIZE)
    assert _feature_diff(fresh(x), enc(x)) == 0.0


def test_fallback_when_onnxruntime_missing(exported, monkeypatch, caplog):
    model, folder, _ = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with caplog.at_level(logging.INFO):
        enc = make_encoder(model, "onnx", folder=folder)
    assert isinstance(enc, TorchEncoder)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "onnxruntime is not installed" in lines[0].getMessage()


def test_fallback_when_export_fails(tmp_path, monkeypatch, caplog):
    model = build_model(get_config("sam2.1-test", 64)).eval()

    def broken(m, path):
        path.write_bytes(b"half a file")
        raise RuntimeError("unsupported operator aten::frobnicate\nmore detail")

    monkeypatch.setattr(onnx_engine, "export_encoder", broken)
    with caplog.at_level(logging.WARNING):
        enc = make_encoder(model, EngineKind.ONNX, folder=tmp_path)
    assert isinstance(enc, TorchEncoder)
    fallback = [r.getMessage() for r in caplog.records if "using the PyTorch encoder" in r.getMessage()]
    assert len(fallback) == 1 and "aten::frobnicate" in fallback[0] and "\n" not in fallback[0]
    assert not list(tmp_path.iterdir())  # nothing half-written is left in the cache


def test_engine_kind_and_session_argument():
    assert {k.value for k in EngineKind} == {"torch", "onnx", "openvino", "auto"}
    from napari_sam2med._cli_utils import ENGINE_KINDS

    assert set(ENGINE_KINDS) == {k.value for k in EngineKind}
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        Session(build_model(get_config("sam2.1-test", 64)), np.zeros((2, 8, 8), np.uint8), engine="tensorrt")


def _blob_stack(n=5, h=96):
    yy, xx = np.mgrid[:h, :h]
    vol = np.full((n, h, h), 40, np.uint8)
    for z in range(n):
        vol[z][(yy - 40 - 2 * z) ** 2 + (xx - 45) ** 2 < 15 ** 2] = 200
    return vol


def _propagate(model, engine):
    s = Session(model, _blob_stack(), engine=engine)
    s.add_points(1, 0, [[40.0, 45.0], [85.0, 85.0]], [1, 0])
    s.set_box(2, 2, [20.0, 20.0, 70.0, 70.0])
    logits = {}
    for step in s.propagate(direction="forward"):
        logits[step.slice_idx] = {o: t.float() for o, t in step.logits.items()}
    return s, logits


@pytest.mark.slow  # propagation exports the memory attention and heads too
def test_propagation_through_onnx_matches_torch(exported, cache_env):
    model, _, _ = exported
    ref_session, ref = _propagate(model, "torch")
    onnx_session, got = _propagate(model, "onnx")
    assert onnx_session.encoder.name == "onnx" and ref_session.encoder.name == "torch"
    assert sorted(got) == sorted(ref) == list(range(5))
    positive = 0
    for f in ref:
        for o in ref[f]:
            a, b = got[f][o], ref[f][o]
            assert (a - b).abs().max().item() <= 1e-3
            ma, mb = a > 0, b > 0
            union = (ma | mb).sum().item()
            positive += union
            if union:
                assert (ma & mb).sum().item() / union >= 0.999
    assert positive > 0, "degenerate masks: the comparison would prove nothing"
    # The cached encoder was used (not exported again); the tracking parts were exported beside it.
    names = [p.name for p in cache_env.glob("*.onnx")]
    assert len(names) == 3 and all(sum(f"-{part}-" in n for n in names) == 1 for part in ("encoder", "memattn", "heads"))


@pytest.mark.slow  # propagation exports the memory attention and heads too
def test_auto_times_both_and_keeps_one(exported, cache_env):
    model, _, _ = exported
    s = Session(model, _blob_stack(), engine="auto")
    s.features.get(0)
    enc = s.encoder
    assert isinstance(enc, AutoEncoder) and {"torch", "onnx"} <= set(enc.timings) <= {"torch", "onnx", "openvino"}
    assert enc.name in ("auto:torch", "auto:onnx", "auto:openvino")
    timings = dict(enc.timings)
    s.features.get(1)  # later encodes use the chosen engine only (no new timing)
    assert enc.timings == timings
    s.add_points(1, 0, [[40.0, 45.0]], [1])
    labels = run_to_end(s.propagate())
    assert labels.shape == (5, 96, 96)


@pytest.mark.slow  # propagation exports the memory attention and heads too
def test_cli_propagate_engine_onnx(tmp_path):
    """``sam2med propagate --engine onnx`` as a subprocess: exports once into $SAM2MED_CACHE/onnx and
    writes the same labels as ``--engine torch``."""
    import json
    import os
    import subprocess

    import tifffile

    from napari_sam2med.cli import main
    from napari_sam2med.sam2.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(get_config("sam2.1-test", 64))
    oracle.perturb_(model, seed=1)
    weights = save_checkpoint(model, tmp_path / "test.pt")
    np.save(tmp_path / "stack.npy", oracle.blob_stack(4, 48))
    (tmp_path / "p.json").write_text(json.dumps({"prompts": [
        {"object": 1, "slice": 0, "points": [[17, 17], [40, 40]], "labels": [1, 0]},
        {"object": 2, "slice": 0, "box": [25, 20, 37, 34]}]}))
    common = [str(tmp_path / "stack.npy"), "--prompts", str(tmp_path / "p.json"), "--model", "sam2.1-test",
              "--checkpoint", str(weights), "--image-size", "64", "--no-progress"]
    assert main(["propagate", *common, "--out", str(tmp_path / "torch.tif"), "--engine", "torch"]) == 0
    env = dict(os.environ, SAM2MED_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "napari_sam2med.cli", "propagate", *common,
                           "--out", str(tmp_path / "onnx.tif"), "--engine", "onnx"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("exporting the image encoder of sam2.1-test at 64 px") == 1
    assert "using the PyTorch encoder" not in proc.stderr
    assert proc.stderr.count("exporting the memory attention of sam2.1-test at 64 px") == 1
    assert proc.stderr.count("exporting the decoder and memory encoder of sam2.1-test at 64 px") == 1
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 3  # encoder, memory attention, heads
    ref, got = tifffile.imread(tmp_path / "torch.tif"), tifffile.imread(tmp_path / "onnx.tif")
    assert ref.any() and (ref > 0).sum() < ref.size
    assert (ref == got).mean() >= 0.999
