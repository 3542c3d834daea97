"""Checkpoint registry, download cache with checksums, safe load/save, device choice."""

import contextlib
import dataclasses
import functools
import http.server
import os
import re
import threading

import pytest
import torch

from napari_sam2med.sam2 import checkpoint as ckpt
from napari_sam2med.sam2 import configs
from napari_sam2med.sam2.device import autocast_context, pick_device
from napari_sam2med.sam2.weights import WeightsSpec


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests = []  # replaced per server by the fixture

    def do_GET(self):  # noqa: N802 (http.server naming)
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve ``tmp_path / "srv"`` on 127.0.0.1; yields (base_url, folder, request_log)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv(ckpt.OFFLINE_ENV, raising=False)
    folder = tmp_path / "srv"
    folder.mkdir()
    log = []
    handler = type("Handler", (_CountingHandler,), {"requests": log})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, log
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def _assert_same_state(a, b):
    assert list(a) == list(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_checkpoint_registry_is_the_model_registry():
    registry = ckpt.load_registry()
    assert list(registry) == [c.name for c in configs.list_models()]
    spec = registry["sam2.1-base-plus"]
    assert spec.url == ("https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
                        "sam2.1_hiera_base_plus.pt")
    assert spec.filename == "sam2.1_hiera_base_plus.pt"
    assert registry["sam2-large"].url.endswith("/072824/sam2_hiera_large.pt")
    # every official file has a pinned hash (sources cited in sam2/weights.py)
    official = [s for s in registry.values() if "dl.fbaipublicfiles.com" in s.url]
    assert len(official) == 8 and all(re.fullmatch(r"[0-9a-f]{64}", s.sha256) for s in official)
    assert registry["sam2.1-tiny"].sha256 == "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"
    assert registry["medsam2-latest"].url == "https://huggingface.co/wanglab/MedSAM2/resolve/main/MedSAM2_latest.pt"
    with pytest.raises(ValueError, match="unknown checkpoint"):
        ckpt.get_spec("sam3-huge")


def _register(monkeypatch, name, url, sha256):
    """Point registry entry ``name`` at ``url`` with a pinned ``sha256`` (for the local server)."""
    cfg = configs.MODEL_CONFIGS[name]
    weights = WeightsSpec(url=url, filename=url.rsplit("/", 1)[1], sha256=sha256)
    monkeypatch.setitem(configs.MODEL_CONFIGS, name, dataclasses.replace(cfg, weights=weights))


def test_pinned_hash_refuses_a_different_file(tmp_path, server, small_model, monkeypatch):
    base, folder, log = server
    ckpt.save_checkpoint(small_model, folder / "x.pt")
    cache = tmp_path / "cache"
    _register(monkeypatch, "sam2.1-tiny", f"{base}/x.pt", "0" * 64)
    with pytest.raises(ValueError, match="(?i)hash"):
        ckpt.fetch_checkpoint("sam2.1-tiny", cache=cache, progress=False)
    assert log == ["/x.pt"] and not (cache / "x.pt").exists()
    # the same file with its real hash pinned is accepted and recorded
    _register(monkeypatch, "sam2.1-tiny", f"{base}/x.pt", ckpt.sha256_of(folder / "x.pt"))
    path = ckpt.fetch_checkpoint("sam2.1-tiny", cache=cache, progress=False)
    assert ckpt.sidecar_path(path).read_text().split()[0] == ckpt.sha256_of(folder / "x.pt")
    # the registry hash wins over the recorded sidecar: a cached file that no longer matches is refused
    _register(monkeypatch, "sam2.1-tiny", f"{base}/x.pt", "1" * 64)
    with pytest.raises(ValueError, match="checksum mismatch"):
        ckpt.fetch_checkpoint("sam2.1-tiny", cache=cache, offline=True)


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv(ckpt.CACHE_ENV, str(tmp_path / "c"))
    assert ckpt.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(ckpt.CACHE_ENV)
    assert "napari-sam2med" in str(ckpt.cache_dir())


def test_download_records_hash_and_second_call_uses_cache(tmp_path, server, small_model):
    base, folder, log = server
    ckpt.save_checkpoint(small_model, folder / "x.pt")
    cache = tmp_path / "cache"
    path = ckpt.fetch_checkpoint("tiny-test", url=f"{base}/x.pt", cache=cache, progress=True)
    assert path == cache / "x.pt" and log == ["/x.pt"]
    sidecar = ckpt.sidecar_path(path).read_text().split()
    assert sidecar == [ckpt.sha256_of(folder / "x.pt"), "x.pt"]
    _assert_same_state(ckpt.load_state_dict(path), small_model.state_dict())

    again = ckpt.fetch_checkpoint("tiny-test", url=f"{base}/x.pt", cache=cache, progress=False)
    assert again == path and log == ["/x.pt"]  # no second request


def test_offline_mode(tmp_path, server, small_model, monkeypatch):
    base, folder, log = server
    ckpt.save_checkpoint(small_model, folder / "x.pt")
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="offline"):
        ckpt.fetch_checkpoint("t", url=f"{base}/x.pt", cache=cache, offline=True)
    monkeypatch.setenv(ckpt.OFFLINE_ENV, "1")
    with pytest.raises(FileNotFoundError, match="not cached"):
        ckpt.fetch_checkpoint("sam2.1-tiny", cache=cache)
    assert log == [] and not (cache / "x.pt").exists()
    monkeypatch.delenv(ckpt.OFFLINE_ENV)
    ckpt.fetch_checkpoint("t", url=f"{base}/x.pt", cache=cache, progress=False)
    monkeypatch.setenv(ckpt.OFFLINE_ENV, "1")
    assert ckpt.fetch_checkpoint("t", url=f"{base}/x.pt", cache=cache) == cache / "x.pt"
    assert log == ["/x.pt"]


def test_tampered_cache_file_fails_checksum(tmp_path, server, small_model):
    base, folder, _ = server
    ckpt.save_checkpoint(small_model, folder / "x.pt")
    path = ckpt.fetch_checkpoint("t", url=f"{base}/x.pt", cache=tmp_path, progress=False)
    with open(path, "ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(ValueError, match="checksum mismatch.*delete the file"):
        ckpt.fetch_checkpoint("t", url=f"{base}/x.pt", cache=tmp_path, offline=True)


def test_failed_download_leaves_nothing(tmp_path, server):
    base, _, log = server
    cache = tmp_path / "cache"
    with pytest.raises(ConnectionError, match="could not download"):
        ckpt.fetch_checkpoint("t", url=f"{base}/missing.pt", cache=cache, progress=False)
    assert log == ["/missing.pt"]
    assert list(cache.iterdir()) == []


def test_corrupt_truncated_and_non_dict_files(tmp_path, small_model):
    good = ckpt.save_checkpoint(small_model, tmp_path / "good.pt")
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint" * 20)
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match="cannot read checkpoint"):
            ckpt.load_state_dict(path)
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listing)
    with pytest.raises(ValueError, match="no state dict"):
        ckpt.load_state_dict(listing)
    mixed = tmp_path / "mixed.pt"
    torch.save({"weight": torch.zeros(2), "epoch": 3}, mixed)
    with pytest.raises(ValueError, match="'epoch' is not a named tensor"):
        ckpt.load_state_dict(mixed)
    with pytest.raises(FileNotFoundError):
        ckpt.load_state_dict(tmp_path / "absent.pt")


def test_bare_state_dict_is_accepted(tmp_path, small_model):
    path = tmp_path / "bare.pt"
    torch.save(small_model.state_dict(), path)
    _assert_same_state(ckpt.load_state_dict(path), small_model.state_dict())


def test_save_checkpoint_is_atomic(tmp_path, small_model, monkeypatch):
    def broken(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"PK partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(small_model, tmp_path / "m.pt")
    assert os.listdir(tmp_path) == []


def test_resolve_checkpoint_user_path(tmp_path, small_model):
    with pytest.raises(FileNotFoundError):
        ckpt.resolve_checkpoint("sam2.1-tiny", checkpoint=tmp_path / "nope.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        ckpt.resolve_checkpoint("sam2.1-tiny", checkpoint=text)
    with pytest.raises(ValueError, match="not a file"):
        ckpt.resolve_checkpoint(None, checkpoint=tmp_path)
    good = ckpt.save_checkpoint(small_model.state_dict(), tmp_path / "m.pt")
    assert ckpt.resolve_checkpoint("sam2.1-tiny", checkpoint=str(good)) == good
    with pytest.raises(ValueError, match="name or a checkpoint path"):
        ckpt.resolve_checkpoint(None)


def test_cached_file_with_wrong_hash_is_refused_by_name(tmp_path, small_model, monkeypatch):
    """A file named like the official one but with other content is refused (pinned hash, no trust on first use)."""
    monkeypatch.setenv(ckpt.CACHE_ENV, str(tmp_path))
    ckpt.save_checkpoint(small_model, tmp_path / "sam2.1_hiera_tiny.pt")
    with pytest.raises(ValueError, match="checksum mismatch.*7402e0d8"):
        ckpt.resolve_checkpoint("sam2.1-tiny", offline=True)
    assert not ckpt.sidecar_path(tmp_path / "sam2.1_hiera_tiny.pt").exists()


def test_registry_entry_without_hash_is_trusted_on_first_use(tmp_path, small_model, monkeypatch):
    monkeypatch.setenv(ckpt.CACHE_ENV, str(tmp_path))
    ckpt.save_checkpoint(small_model, tmp_path / "MedSAM2_latest.pt")
    path = ckpt.resolve_checkpoint("medsam2-latest", offline=True)
    assert ckpt.sidecar_path(path).read_text().split()[0] == ckpt.sha256_of(path)
    with open(path, "ab") as handle:  # later changes are caught
        handle.write(b"\x00")
    with pytest.raises(ValueError, match="checksum mismatch"):
        ckpt.resolve_checkpoint("medsam2-latest", offline=True)


def test_pick_device_on_cpu():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda:1")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
    assert isinstance(autocast_context("cpu"), contextlib.nullcontext)
    with autocast_context(pick_device("cpu")):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.float32


def test_packaged_weights_are_verified_and_never_downloaded(tmp_path, monkeypatch):
    """A ``package:`` entry (weights shipped in napari_sam2med/models) is checked against its pinned hash."""
    import importlib.resources

    shipped = importlib.resources.files("napari_sam2med") / "models" / "SAM2FLOW_MODEL_CARD.md"
    digest = ckpt.sha256_of(str(shipped))
    monkeypatch.setattr("pooch.retrieve", lambda *a, **k: pytest.fail("must not download"))
    _register(monkeypatch, "sam2.1-tiny", "package:models/SAM2FLOW_MODEL_CARD.md", digest)
    assert ckpt.fetch_checkpoint("sam2.1-tiny", cache=tmp_path, offline=True).name == "SAM2FLOW_MODEL_CARD.md"
    _register(monkeypatch, "sam2.1-tiny", "package:models/SAM2FLOW_MODEL_CARD.md", "0" * 64)
    with pytest.raises(ValueError, match="checksum mismatch"):
        ckpt.fetch_checkpoint("sam2.1-tiny", cache=tmp_path)
    _register(monkeypatch, "sam2.1-tiny", "package:models/absent.pt", digest)
    with pytest.raises(FileNotFoundError, match="packaged weights"):
        ckpt.fetch_checkpoint("sam2.1-tiny", cache=tmp_path)
    assert list(tmp_path.iterdir()) == []
