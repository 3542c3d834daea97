"""All-pairs correlation pyramid with local look-up (RAFT style).

Pooling the all-pairs volume over the second image equals correlating with pooled
features of the second image, so large maps use that exact, memory-light form
(:class:`LocalCorrelation`) and small maps precompute the full volume
(:class:`AllPairsCorrelation`). Both return the same values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["AllPairsCorrelation", "LocalCorrelation", "build_correlation"]


def _offsets(radius: int, device, dtype) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dr, dc = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dr, dc], dim=-1).reshape(-1, 2)  # (K, 2) (row, col)


def _normalise(coords_rc: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(…, 2) (row, col) pixel coords -> grid_sample (x, y) in [-1, 1], align_corners=True."""
    y = 2.0 * coords_rc[..., 0] / max(h - 1, 1) - 1.0
    x = 2.0 * coords_rc[..., 1] / max(w - 1, 1) - 1.0
    return torch.stack([x, y], dim=-1)


class AllPairsCorrelation:
    """Precomputed all-pairs volume and its average-pooled pyramid."""

    def __init__(self, f1: torch.Tensor, f2: torch.Tensor, levels: int = 3, radius: int = 3):
        b, c, h, w = f1.shape
        self.levels, self.radius, self.shape = levels, radius, (b, h, w)
        corr = torch.einsum("bchw,bcuv->bhwuv", f1, f2) / c**0.5
        corr = corr.reshape(b * h * w, 1, h, w)
        self.pyramid = [corr]
        for _ in range(levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.pyramid.append(corr)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """Look up ``(2r+1)^2`` values per level around ``coords`` (B, 2, H, W) (row, col)."""
        b, h, w = self.shape
        centre = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 2)
        offs = _offsets(self.radius, coords.device, coords.dtype)[None]
        out = []
        for lvl, corr in enumerate(self.pyramid):
            pts = centre / 2**lvl + offs  # (BHW, K, 2)
            grid = _normalise(pts, corr.shape[-2], corr.shape[-1])[:, None]
            val = F.grid_sample(corr, grid, align_corners=True)  # (BHW, 1, 1, K)
            out.append(val.reshape(b, h, w, -1))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous()


class LocalCorrelation:
    """Same values as :class:`AllPairsCorrelation` from pooled features, O(HW C) memory."""

    def __init__(self, f1: torch.Tensor, f2: torch.Tensor, levels: int = 3, radius: int = 3):
        self.f1, self.levels, self.radius = f1, levels, radius
        self.scale = f1.shape[1] ** 0.5
        self.pyramid = [f2]
        for _ in range(levels - 1):
            self.pyramid.append(F.avg_pool2d(self.pyramid[-1], 2, stride=2))

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        centre = coords.permute(0, 2, 3, 1)  # (B, H, W, 2)
        offs = _offsets(self.radius, coords.device, coords.dtype)
        out = []
        for lvl, f2 in enumerate(self.pyramid):
            for off in offs:
                grid = _normalise(centre / 2**lvl + off, f2.shape[-2], f2.shape[-1])
                sampled = F.grid_sample(f2, grid, align_corners=True)
                out.append((self.f1 * sampled).sum(1) / self.scale)
        return torch.stack(out, dim=1)


def build_correlation(f1, f2, levels: int = 3, radius: int = 3, max_all_pairs: int = 4096):
    """All-pairs volume for maps of at most ``max_all_pairs`` pixels, else the local form."""
    if f1.shape[-2] * f1.shape[-1] <= max_all_pairs:
        return AllPairsCorrelation(f1, f2, levels, radius)
    return LocalCorrelation(f1, f2, levels, radius)
