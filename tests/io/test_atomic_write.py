"""The one atomic-write helper (``io.writers.atomic_write``) and its users: a failure mid-write leaves
no file (and keeps an existing one); the TIFF reader catches only what it means."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_sam2med.io.writers import atomic_write


def _partial_then(exc):
    def write(tmp):
        tmp.write_text("half of it")
        raise exc
    return write


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_no_file(tmp_path, exc):
    with pytest.raises(type(exc)):
        atomic_write(tmp_path / "out.txt", _partial_then(exc))
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_existing_file_and_directory(tmp_path):
    old = tmp_path / "out.txt"
    old.write_text("old")
    with pytest.raises(OSError):
        atomic_write(old, _partial_then(OSError("disk full")))
    assert old.read_text() == "old" and list(tmp_path.iterdir()) == [old]

    store = tmp_path / "s.zarr"
    store.mkdir()
    (store / "keep").write_text("old")

    def half_store(tmp):
        tmp.mkdir()
        (tmp / "chunk").write_text("new")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(store, half_store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "s.zarr"]
    assert [p.name for p in store.iterdir()] == ["keep"]
    atomic_write(store, lambda tmp: (tmp.mkdir(), (tmp / "new").write_text("x")))  # success replaces it
    assert [p.name for p in store.iterdir()] == ["new"]


def test_metrics_csv_is_atomic(tmp_path):
    from napari_sam2med.octa.metrics import write_metrics_csv

    path = tmp_path / "m.csv"
    write_metrics_csv(path, [{"layer": "0", "dice": 0.5}])
    # the second row has a field the header lacks: DictWriter fails after writing the header and row 1
    with pytest.raises(ValueError):
        write_metrics_csv(path, [{"layer": "0", "dice": 0.9}, {"layer": "1", "dice": 0.8, "extra": 1}])
    assert list(csv.DictReader(path.read_text().splitlines())) == [{"layer": "0", "dice": "0.5"}]
    assert list(tmp_path.iterdir()) == [path]


def test_save_checkpoint_uses_the_helper(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from napari_sam2med.sam2 import checkpoint as ckpt

    calls = []
    real = ckpt.atomic_write
    monkeypatch.setattr(ckpt, "atomic_write", lambda path, write: calls.append(path) or real(path, write))
    ckpt.save_checkpoint({"w": torch.zeros(2)}, tmp_path / "m.pt")
    assert calls == [tmp_path / "m.pt"] and list(tmp_path.iterdir()) == [tmp_path / "m.pt"]


def test_tiff_reader_reports_bad_files_and_does_not_hide_bugs(tmp_path, monkeypatch):
    from napari_sam2med.io import readers

    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(ValueError, match="cannot read TIFF"):
        readers._read_tiff(bad)
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    np.testing.assert_array_equal(np.asarray(readers._read_tiff(good)[:]), np.arange(24).reshape(2, 3, 4))

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug, not a bad file")

    monkeypatch.setattr(tifffile, "imread", bug)
    with pytest.raises(ZeroDivisionError):  # used to be swallowed by `except Exception: pass`
        readers._read_tiff(good)


def test_run_to_end_and_relay_keep_every_step_and_the_result():
    from napari_sam2med.engine.progress import relay, run_to_end

    def work(n):
        for i in range(n):
            yield i
        return "done"

    steps = []
    assert run_to_end(work(3), steps.append) == "done" and steps == [0, 1, 2]

    def outer():
        result = yield from relay(work(2), lambda i: f"step {i}")
        return result + "!"

    seen = []
    assert run_to_end(outer(), seen.append) == "done!" and seen == ["step 0", "step 1"]
