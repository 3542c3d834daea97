"""Small labelled volumes for the training tests."""

from __future__ import annotations

import numpy as np
import pytest


def blob_volume(seed: int, n: int = 6, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 (n, size, size) volume with two moving bright blobs and its int32 labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.empty((n, size, size), np.uint8)
    lab = np.zeros((n, size, size), np.int32)
    c1 = rng.uniform(0.25, 0.4, 2) * size
    c2 = rng.uniform(0.6, 0.75, 2) * size
    for z in range(n):
        frame = 40 + 30 * rng.random((size, size))
        for oid, (c, r, v) in enumerate(((c1 + z, 0.12 * size, 200), (c2 - z, 0.09 * size, 150)), start=1):
            m = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r ** 2
            frame[m] = v + 20 * rng.random(m.sum())
            lab[z][m] = oid
        img[z] = np.clip(frame, 0, 255)
    return img, lab


@pytest.fixture
def npz_dir(tmp_path):
    """A folder of 3 MedSAM2-style .npz volumes."""
    d = tmp_path / "npz"
    d.mkdir()
    for k in range(3):
        img, lab = blob_volume(k)
        np.savez(d / f"vol{k}.npz", imgs=img, gts=lab.astype(np.uint8), spacing=np.array([2.0, 1.0, 1.0]))
    return d
