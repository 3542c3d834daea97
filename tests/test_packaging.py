"""napari finds our manifest from an editable install and from a built wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_manifest_validates_and_is_discovered():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(REPO / "napari.yaml")
    assert manifest.name == "napari-sam2med"
    pm = npe2.PluginManager()
    pm.discover()
    names = {m.name for m in pm.iter_manifests()}
    assert "napari-sam2med" in names, "entry point napari.manifest not found (pip install -e .?)"
    found = pm.get_manifest("napari-sam2med")
    widgets = {w.display_name for w in found.contributions.widgets or []}
    assert {"SAM2Flow", "OCTA (SAM-OCTA2)"} <= widgets


def test_npe2_validate_cli():
    exe = Path(sys.executable).with_name("npe2")
    if not exe.exists():
        pytest.skip("npe2 console script not installed")
    res = subprocess.run([str(exe), "validate", str(REPO / "napari.yaml")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_wheel_ships_manifest_and_models(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                         capture_output=True, text=True)
    if res.returncode != 0 and "No matching distribution" in res.stderr:
        pytest.skip("no network to fetch the build backend")
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("napari_sam2med-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "napari_sam2med/napari.yaml" in names
        # The shipped weights and their cards travel in the wheel (the registry points at them).
        assert "napari_sam2med/models/sam2flow_v1.pt" in names
        assert "napari_sam2med/models/sam2flow_v2.pt" in names
        assert "napari_sam2med/models/SAM2FLOW_MODEL_CARD.md" in names
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        text = z.read(entry).decode()
        yaml_text = z.read("napari_sam2med/napari.yaml").decode()
    assert "napari.manifest" in text and "napari_sam2med:napari.yaml" in text
    assert yaml_text == (REPO / "napari.yaml").read_text()
