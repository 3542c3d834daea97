"""A model against the classical box baselines on the CT lesion volumes of ../shared/data/ct_lesions.

MedSAM2's protocol (``box-middle``): the ground-truth box on the slice where the lesion is largest is
the only prompt; the lesion is propagated both ways through the real ``engine.Session`` (the same code
as ``sam2med evaluate``) and scored on that slice (2D Dice) and in 3D. The box baselines of
``napari_sam2med.eval.baselines`` are scored in the same run, from the same box.

    python benchmarks/ct_lesions.py --model sam2med-small-ct --crop-context 3 [--volumes NAME ...]
    python benchmarks/ct_lesions.py --model sam2.1-tiny --checkpoint sam2.1_hiera_tiny.pt --image-size 1024

``sam2med evaluate --data ../shared/data/ct_lesions --model ... --out EVAL_DIR`` writes the same model
figures with HD95, surface Dice, masks and overlays. With ``--random-init`` the pipeline runs but the
model's scores say nothing about accuracy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_sam2med.engine import run_to_end
from napari_sam2med.engine.metrics import dice  # noqa: F401  (kept for callers of this script)
from napari_sam2med.eval.baselines import BOX_BASELINES, box_baseline_rows
from napari_sam2med.eval.runner import EvalConfig, evaluate_volume
from napari_sam2med.io import read_spacing
from napari_sam2med.sam2 import load_model
from napari_sam2med.train.data import discover

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct_lesions"


def evaluate_case(model, path: Path, crop_context: float | None = None) -> dict:
    """Box-middle propagation of one case's lesion (all foreground as one object) and its scores."""
    vol = discover([path])[0]
    vol.labels = (np.asarray(vol.labels) > 0).astype(np.int32)
    vol.spacing = read_spacing(path)
    t0 = time.perf_counter()
    res = run_to_end(evaluate_volume(model, vol, EvalConfig(crop_context=crop_context)))
    row = res.object_rows[0]
    pred, gts = res.labels == 1, res.gt == 1
    per_slice = [dice(pred[z], gts[z]) for z in range(len(gts)) if gts[z].any() or pred[z].any()]
    return {"case": path.stem, "slices": len(gts), "key_slice": row["key_slice"], "volume_dice": row["dice"],
            "slice_dice": row["slice_dice"], "mean_slice_dice": float(np.mean(per_slice)), "hd95": row["hd95"],
            "over_propagation": row["over_propagation"], "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1-tiny")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--crop-context", type=float, default=None, help="crop-around-the-prompt window / box side")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--volumes", nargs="*", default=None, help="only these volume names (e.g. the held-out ones)")
    args = p.parse_args()
    model = load_model(args.model, image_size=args.image_size, checkpoint=args.checkpoint,
                       random_init=args.random_init, device=args.device)
    files = [f for f in sorted(Path(args.data).glob("*.npz")) if not args.volumes or f.stem in args.volumes]
    note = " (RANDOM WEIGHTS: the model's scores are meaningless)" if args.random_init else ""
    print(f"model {args.model}{' crop ' + str(args.crop_context) if args.crop_context else ''}{note}")
    print("| volume | model 2D / 3D | HD95 mm | over-prop. | " + " | ".join(f"{b} 2D / 3D" for b in BOX_BASELINES)
          + " | s |")
    print("|" + "---|" * (len(BOX_BASELINES) + 5))
    for f in files:
        r = evaluate_case(model, f, args.crop_context)
        with np.load(f) as d:
            base = {b["baseline"]: b for b in box_baseline_rows(f.stem, d["imgs"], d["gts"] > 0, read_spacing(f))}
        cells = " | ".join(f"{base[b]['slice_dice']:.3f} / {base[b]['dice']:.3f}" for b in BOX_BASELINES)
        print(f"| {f.stem} | {r['slice_dice']:.3f} / {r['volume_dice']:.3f} | {r['hd95']:.1f} | "
              f"{r['over_propagation']:.3f} | {cells} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
