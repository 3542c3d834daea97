"""Batch test data: small volumes with prompts, a manifest, and the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

N_SLICES, SIZE = 6, 64
MODEL_ARGS = ["--model", "sam2.1-test", "--image-size", "64", "--device", "cpu", "--no-progress"]


def blob_volume(seed: int, n: int = N_SLICES, size: int = SIZE) -> np.ndarray:
    """A uint8 (n, size, size) volume: a bright disc drifting over a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames = []
    for t in range(n):
        img = 40 + 30 * rng.random((size, size))
        r, c = size * (0.4 + 0.02 * t), size * (0.45 + 0.01 * seed)
        img[(yy - r) ** 2 + (xx - c) ** 2 < (0.15 * size) ** 2] = 190
        frames.append(img)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def prompts_for(seed: int) -> dict:
    c = SIZE * (0.45 + 0.01 * seed)
    return {"prompts": [
        {"object": 1, "slice": 2, "points": [[SIZE * 0.44, c]], "labels": [1]},
        {"object": 2, "slice": 0, "box": [4, 4, 20, 24]},
    ]}


def _env() -> dict:
    return dict(os.environ, SAM2MED_OFFLINE="1")


def sam2med(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the console script as the user does (a subprocess) and wait for it."""
    return subprocess.run([sys.executable, "-m", "napari_sam2med.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def sam2med_popen(*args: str) -> subprocess.Popen:
    """Start the console script in the background (stdout and stderr piped, text)."""
    return subprocess.Popen([sys.executable, "-m", "napari_sam2med.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def make_study(folder: Path, n: int = 5, suffixes=(".tif", ".npy", ".tif", ".nii.gz", ".tif")) -> Path:
    """``n`` volumes with prompts and a JSON manifest (mixed formats, one box entry); returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for k in range(n):
        vol = blob_volume(k)
        suffix = suffixes[k % len(suffixes)]
        image = folder / f"vol{k}{suffix}"
        if suffix == ".npy":
            np.save(image, vol)
        elif suffix == ".nii.gz":
            import nibabel as nib

            nib.save(nib.Nifti1Image(np.ascontiguousarray(vol.transpose(2, 1, 0)), np.eye(4)), str(image))
        else:
            tifffile.imwrite(image, vol)
        if k == 1:
            entries.append({"image": image.name, "box": [0, 4, 4, 20, 24], "out": f"vol{k}_labels.zarr"})
            (folder / f"vol{k}.prompts.json").write_text(json.dumps(
                {"prompts": [{"object": 1, "slice": 0, "box": [4, 4, 20, 24]}]}))
        else:
            (folder / f"vol{k}.prompts.json").write_text(json.dumps(prompts_for(k)))
            entries.append({"image": image.name, "prompts": f"vol{k}.prompts.json", "out": f"vol{k}_labels.tif"})
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"volumes": entries}))
    return manifest


def fill_dock(widget, source: Path, out: Path, checkpoint: Path, size: int = SIZE) -> None:
    """Fill the Batch dock's form as a user does: ``sam2.1-test`` at ``size`` px, one worker."""
    widget.source_edit.setText(str(source))
    widget.out_edit.setText(str(out))
    widget.model_combo.setCurrentText("sam2.1-test")
    widget.size_combo.setCurrentText(str(size))
    widget.checkpoint_edit.setText(str(checkpoint))
    widget.workers_spin.setValue(1)
