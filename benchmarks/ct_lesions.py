"""Dice of box-prompted propagation on the CT lesion volumes of ../shared/data/ct_lesions.

A box around the ground truth on the slice with the largest lesion area is the only prompt; the
lesion is propagated both ways and scored per slice and per volume. Needs real weights to mean
anything: with ``--random-init`` the pipeline runs but the scores say nothing about accuracy.

    python benchmarks/ct_lesions.py --model sam2.1-tiny --checkpoint sam2.1_hiera_tiny.pt --image-size 1024
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_sam2med.engine import Session, run_to_end
from napari_sam2med.io import FrameStack
from napari_sam2med.sam2 import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct_lesions"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean arrays; 1.0 when both are empty."""
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def box_prompt(gt2d: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(gt2d)
    return [rows.min(), cols.min(), rows.max(), cols.max()]


def evaluate_case(model, path: Path) -> dict:
    """Propagate a box prompt through one case and score it."""
    d = np.load(path)
    imgs, gts = d["imgs"], d["gts"].astype(bool)
    key = int(np.argmax(gts.sum(axis=(1, 2))))
    session = Session(model, FrameStack(imgs))
    session.set_box(1, key, box_prompt(gts[key]))
    t0 = time.perf_counter()
    labels = run_to_end(session.propagate("both"))
    seconds = time.perf_counter() - t0
    pred = labels == 1
    per_slice = [dice(pred[z], gts[z]) for z in range(len(gts)) if gts[z].any() or pred[z].any()]
    return {"case": path.stem, "slices": len(imgs), "key_slice": key, "volume_dice": dice(pred, gts),
            "mean_slice_dice": float(np.mean(per_slice)), "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1-tiny")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=str(DATA))
    args = p.parse_args()
    model = load_model(args.model, image_size=args.image_size, checkpoint=args.checkpoint,
                       random_init=args.random_init, device=args.device)
    rows = [evaluate_case(model, f) for f in sorted(Path(args.data).glob("*.npz"))]
    note = " (RANDOM WEIGHTS: scores are meaningless)" if args.random_init else ""
    print(f"| case | slices | volume Dice | mean slice Dice | s |{note}\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['slices']} | {r['volume_dice']:.3f} | {r['mean_slice_dice']:.3f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
