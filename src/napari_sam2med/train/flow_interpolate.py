"""Weight-space interpolation between two SAM2Flow checkpoints of the same architecture.

Why: a fine-tune on the realistic generator improves the long realistic set but moves the weights
away from what the 12-frame (v1-generator) set needs; the straight-line average of the base and the
fine-tuned weights often keeps most of both (as in "robust fine-tuning" by weight-space ensembling).
The mixing coefficient is chosen on the selection sets (:mod:`.flow_selection`), never on the
reported sets.

Run::

    python -m napari_sam2med.train.flow_interpolate BASE.pt TUNED.pt ALPHA OUT.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..flow.estimators.sam2flow import load_flow_model, save_flow_weights
from ..flow.net.model import SAM2Flow

__all__ = ["interpolate_flow_weights", "main"]


def interpolate_flow_weights(base, tuned, alpha: float) -> SAM2Flow:
    """``(1 - alpha) * base + alpha * tuned`` for every floating-point tensor (strict keys).

    Parameters
    ----------
    base, tuned : str or Path
        SAM2Flow checkpoints with the same config (loaded by :func:`load_flow_model`).
    alpha : float
        Weight of ``tuned``, in [0, 1].

    Returns
    -------
    SAM2Flow
        A model with the interpolated weights, in eval mode.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    model, other = load_flow_model(base), load_flow_model(tuned)
    if model.cfg.to_dict() != other.cfg.to_dict():
        raise ValueError(f"{base} and {tuned} have different SAM2Flow configs")
    theirs = other.state_dict()
    mixed = {k: torch.lerp(v, theirs[k], alpha) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(mixed, strict=True)
    return model


def main(argv=None) -> None:
    """Command line: write the interpolated weights (fp16) with their provenance."""
    parser = argparse.ArgumentParser(description="Interpolate two SAM2Flow checkpoints in weight space.")
    parser.add_argument("base", type=Path)
    parser.add_argument("tuned", type=Path)
    parser.add_argument("alpha", type=float, help="weight of TUNED in [0, 1]")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    model = interpolate_flow_weights(args.base, args.tuned, args.alpha)
    save_flow_weights(model, args.out, {"interpolation": {"base": str(args.base), "tuned": str(args.tuned),
                                                          "alpha": args.alpha}})
    print(f"{args.out}: {1 - args.alpha:g} x {args.base} + {args.alpha:g} x {args.tuned}")


if __name__ == "__main__":
    main()
