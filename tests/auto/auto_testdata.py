"""AutoSAM2 test data: bright noisy discs, a frozen random-weight test SAM2 and a prompt encoder trained on them.

Imported by path (``sys.path``) from tests/auto and tests/batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 256  # the test SAM2's input: a 16x16 embedding grid (128 px is too coarse to learn a blob in seconds)


def blobs(n: int, seed: int, size: int = 64):
    """``n`` (size, size) float images in [0, 1], one bright noisy disc each, and their bool masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        r = rng.uniform(6, 14)
        cy, cx = rng.uniform(r + 2, size - r - 2, 2)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        images.append(np.clip(0.25 + 0.5 * m + rng.normal(0, 0.08, m.shape), 0, 1).astype(np.float32))
        masks.append(m)
    return images, masks


def blob_stack(n: int = 4, seed: int = 7, size: int = 64):
    """A uint8 (n, size, size) stack of one disc drifting right by 2 px per slice, and its bool masks."""
    images, masks = blobs(1, seed, size)
    stack = np.stack([np.roll(images[0], 2 * k, axis=1) for k in range(n)])
    truth = np.stack([np.roll(masks[0], 2 * k, axis=1) for k in range(n)])
    return (stack * 255).astype(np.uint8), truth


def frozen_sam2(seed: int = 0, size: int = SIZE):
    """The ``sam2.1-test`` architecture with seeded random weights on the CPU (frozen SAM2 of these tests)."""
    import torch

    from napari_sam2med.sam2 import build_model, get_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(get_config("sam2.1-test", size))


def train_encoder(model, path: Path, steps: int = 100) -> Path:
    """Train a small prompt encoder on 16 blobs against ``model`` (~10 s CPU) and save it to ``path``."""
    import torch

    from napari_sam2med.auto.prompt_net import save_prompt_net
    from napari_sam2med.auto.training import AutoTrainConfig, train_prompt_net
    from napari_sam2med.engine import run_to_end

    torch.set_num_threads(1)
    images, masks = blobs(16, 0)
    cfg = AutoTrainConfig(steps=steps, batch_size=4, input_size=64, width=8, lr=1e-2, seed=0, augment=False)
    res = run_to_end(train_prompt_net(model, images, masks, cfg))
    return save_prompt_net(path, res.net, model)
