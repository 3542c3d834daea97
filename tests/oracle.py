"""Helpers that build the official SAM2 (``sam2==1.1.0``) as the oracle for parity tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

OFFICIAL_CONFIGS = {
    "sam2.1-tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2-tiny": "configs/sam2/sam2_hiera_t.yaml",
}


def official_video_predictor(name: str, image_size: int, **extra):
    """The official video predictor at ``image_size`` with random weights (CPU, eval)."""
    pytest.importorskip("hydra")
    sam2_build = pytest.importorskip("sam2.build_sam")
    overrides = [f"++model.image_size={image_size}"] + [f"++model.{k}={v}" for k, v in extra.items()]
    pred = sam2_build.build_sam2_video_predictor(OFFICIAL_CONFIGS[name], ckpt_path=None, device="cpu",
                                                 mode="eval", hydra_overrides_extra=overrides)
    return pred


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> None:
    """Add seeded noise to every parameter so that random-init outputs are not degenerate,
    and push the object-score head towards "object present" so masks are not all empty."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            p.add_(scale * noise * (p.std() if p.numel() > 1 else 1.0))
        head = model.sam_mask_decoder.pred_obj_score_head
        last = head.layers[-1] if hasattr(head, "layers") else head
        last.bias.fill_(4.0)


def perturbed_test_model(seed: int, image_size: int = 64) -> torch.nn.Module:
    """Our ``sam2.1-test`` model from a fixed random init, perturbed by :func:`perturb_` (``seed``)."""
    from napari_sam2med.sam2 import build_model, get_config

    torch.manual_seed(0)
    model = build_model(get_config("sam2.1-test", image_size))
    perturb_(model, seed=seed)
    return model


def perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add seeded noise to every parameter so no output is trivially constant; return it in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return module.eval()


def mirrored(official: torch.nn.Module, ours: torch.nn.Module) -> torch.nn.Module:
    """Load the official module's weights into ours (same keys, strict); return ours in eval mode."""
    assert list(ours.state_dict().keys()) == list(official.state_dict().keys())
    ours.load_state_dict(official.state_dict(), strict=True)
    return ours.eval()


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two same-shape tensors (0.0 when empty)."""
    assert a.shape == b.shape
    return (a - b).abs().max().item() if a.numel() else 0.0


def blob_stack(n: int = 8, size: int = 96, seed: int = 0) -> np.ndarray:
    """A uint8 stack of two moving bright blobs on a textured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames = []
    for t in range(n):
        img = 40 + 20 * rng.random((size, size))
        for (r, c, rad, v) in ((0.35 + 0.02 * t, 0.35, 0.14, 200), (0.65, 0.6 - 0.02 * t, 0.1, 140)):
            img[(yy - r * size) ** 2 + (xx - c * size) ** 2 < (rad * size) ** 2] = v
        frames.append(img)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)
