"""``sam2med models``: list the model registry (name, size, image size, cached or not, card).

Usage::

    sam2med models [--verbose-cards]

Reads :func:`~napari_sam2med.sam2.configs.list_models`; nothing is downloaded. This module
imports only argparse at the top (the CLI builds every sub-command's parser).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run", "model_rows"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``models`` sub-command to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "models", help="list the registered models (size, image size, cached or not, card)",
        description="List the model registry: name, parameters, image size, whether the checkpoint is "
                    "in the cache, its pinned SHA-256 and where its model card is.",
    )
    p.add_argument("--urls", action="store_true", help="also print each checkpoint's URL and SHA-256")
    p.set_defaults(func=run)
    return p


def model_rows() -> list[dict[str, Any]]:
    """One dict per registered model: name, params_m, image_size, cached, path, sha256, url, card, summary,
    normalization."""
    from .configs import list_models
    from .defaults import local_weights
    from .weights import cache_dir

    folder = cache_dir()
    rows = []
    for cfg in list_models():
        # a model shipped in the package is "cached" where the package is (no download needed)
        local = local_weights(cfg.name)
        path = local if local is not None else folder / cfg.weights.filename
        rows.append({
            "name": cfg.name, "params_m": cfg.params_m, "image_size": cfg.image_size, "cached": local is not None,
            "path": str(path), "sha256": cfg.weights.sha256, "url": cfg.weights.url, "card": cfg.card,
            "summary": cfg.summary, "normalization": cfg.normalization,
        })
    return rows


def run(args: argparse.Namespace) -> int:
    """Print the registry as a table; returns 0."""
    from .weights import cache_dir

    rows = model_rows()
    header = f"{'name':<26} {'params':>7} {'image':>5}  {'cached':<6}  summary"
    print(header)
    print("-" * len(header))
    for r in rows:
        params = f"{r['params_m']:.1f}M" if r["params_m"] else "?"
        print(f"{r['name']:<26} {params:>7} {r['image_size']:>5}  {'yes' if r['cached'] else 'no':<6}  {r['summary']}")
        print(f"{'':<26} card: {r['card']}")
        if args.urls:
            print(f"{'':<26} url: {r['url']}")
            print(f"{'':<26} sha256: {r['sha256'] or 'not published (recorded on first download)'}")
            norm = r["normalization"]
            print(f"{'':<26} input: {norm.intensity}; then (x - {norm.mean}) / {norm.std}")
    print(f"\ncache: {cache_dir()} (set $SAM2MED_CACHE to move it)")
    return 0
