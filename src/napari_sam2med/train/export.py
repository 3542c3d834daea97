"""Export a training checkpoint as shippable weights: ``{"model": state_dict}`` in float16.

    python -m napari_sam2med.train.export RUN/best.pt models/sam2med_small_ct_v1.pt --model sam2med-small-ct

The file is checked to load strictly (``weights_only=True``) into the named architecture, and its
size and SHA-256 (to pin in the registry) are printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..sam2 import build_model, get_config
from ..sam2.build import load_weights
from ..sam2.checkpoint import load_state_dict, save_checkpoint, sha256_of

__all__ = ["export_weights"]


def export_weights(src: str | Path, dst: str | Path, model: str, half: bool = True) -> tuple[Path, str]:
    """Write ``src``'s weights to ``dst`` (float16 when ``half``); returns the path and its SHA-256."""
    sd = load_state_dict(src)
    sd = {k: (v.half() if half and v.is_floating_point() else v) for k, v in sd.items()}
    path = save_checkpoint(sd, dst)
    load_weights(build_model(get_config(model)), path)  # strict, weights_only
    return path, sha256_of(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="export training weights as a float16 {'model': state_dict} file")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--model", required=True)
    p.add_argument("--fp32", action="store_true")
    a = p.parse_args(argv)
    path, digest = export_weights(a.src, a.dst, a.model, half=not a.fp32)
    print(f"{path}  {path.stat().st_size} bytes  sha256 {digest}")


if __name__ == "__main__":
    main()
