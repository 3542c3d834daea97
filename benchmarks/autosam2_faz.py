"""AutoSAM2 FAZ proof (issue 13): leave-one-case-out Dice on OCTA-500 FAZ, no clicks, vs the classical baseline.

    .venv/bin/python benchmarks/autosam2_faz.py [--steps 450] [--lr 1e-2] [--sam2 sam2.1-test --image-size 256] [--checkpoint SAM2.pt]
        [--out /tmp/autosam2_faz.json]

For each of the six shared cases (10301-10303 3M, 10001-10003 6M), a prompt encoder is trained
on the other five (ILM_OPL projections, flips/rotations + contrast jitter) against a frozen SAM2 and
evaluated on the held-out case; ``eval.baselines.faz_baseline`` is scored on the same case.
No selection split: one fixed recipe, reported as is. 1 thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam2med.auto.infer import auto_mask
from napari_sam2med.auto.training import AutoTrainConfig, config_record, train_prompt_net
from napari_sam2med.engine import run_to_end
from napari_sam2med.engine.metrics import dice
from napari_sam2med.eval.baselines import faz_baseline
from napari_sam2med.octa.datasets import read_ground_truth, read_projections
from napari_sam2med.sam2 import build_model, get_config, load_model

ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "octa500_projections_3d"
CASES = [("OCTA_3M", c) for c in ("10301", "10302", "10303")] + [("OCTA_6M", c) for c in ("10001", "10002", "10003")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=450)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--sam2", default="sam2.1-test")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--checkpoint", default=None, help="SAM2 weights (default: random init, seed 0)")
    ap.add_argument("--out", default="/tmp/autosam2_faz.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.checkpoint:
        sam2 = load_model(args.sam2, image_size=args.image_size, checkpoint=args.checkpoint, device="cpu")
    else:
        torch.manual_seed(0)
        sam2 = build_model(get_config(args.sam2, args.image_size))
    data = []
    for folder, case in CASES:
        img = read_projections(ROOT / folder, case).images[1].astype(np.float32) / 255.0  # ILM_OPL
        data.append((case, img, read_ground_truth(ROOT / folder, case, "FAZ")))
    cfg = AutoTrainConfig(steps=args.steps, batch_size=4, lr=args.lr, input_size=128, width=16, augment=True, seed=0)
    rows = []
    for k, (case, img, gt) in enumerate(data):
        train = [d for j, d in enumerate(data) if j != k]
        t0 = time.perf_counter()
        res = run_to_end(train_prompt_net(sam2, [d[1] for d in train], [d[2] for d in train], cfg))
        mask, score = auto_mask(sam2, res.net, img)
        row = {"case": case, "autosam2_dice": dice(mask, gt), "baseline_dice": dice(faz_baseline(img), gt),
               "train_dice_last": float(np.mean([h["dice"] for h in res.history[-20:]])),
               "train_s": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"sam2": args.sam2, "image_size": args.image_size, "sam2_weights": args.checkpoint or "random init (seed 0)",
               "recipe": config_record(cfg), "rows": rows,
               "mean_autosam2": float(np.mean([r["autosam2_dice"] for r in rows])),
               "mean_baseline": float(np.mean([r["baseline_dice"] for r in rows]))}
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("mean_autosam2", "mean_baseline")}))


if __name__ == "__main__":
    main()
