"""Classical baselines on the shared data: CT lesion box baselines and the OCTA FAZ baseline.

    python benchmarks/baselines.py [--ct ../shared/data/ct_lesions] [--octa ../shared/data/octa500_projections_3d]

CT (issue 18): from the ground-truth box on the slice where the lesion is largest: the box as the mask
(that slice only), the box extruded through every slice, the extrusion limited to the lesion's true
z extent (uses ground truth), and a marker watershed in the box carried slice to slice
(``napari_sam2med.eval.baselines``). 2D Dice on the prompted slice and 3D Dice / HD95 per volume.
OCTA: the FAZ as the dark component around the darkest smooth point near the centre of the ILM_OPL
(and FULL, OPL_BM) projection; per-case Dice against GT_FAZ.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_sam2med.engine.metrics import dice
from napari_sam2med.eval.baselines import BOX_BASELINES, box_baseline_rows, faz_baseline
from napari_sam2med.io import read_spacing

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OCTA_CASES = (("OCTA_3M", ("10301", "10302", "10303")), ("OCTA_6M", ("10001", "10002", "10003")))


def ct_table(folder: Path) -> str:
    """Markdown: per volume, 2D / 3D Dice of every box baseline; then the means."""
    rows = []
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as d:
            img, gt = d["imgs"], d["gts"] > 0
        t0 = time.perf_counter()
        rows += box_baseline_rows(f.stem, img, gt, read_spacing(f))
        print(f"{f.stem}: {time.perf_counter() - t0:.2f} s")
    head = "| volume | key slice | " + " | ".join(f"{b} 2D / 3D" for b in BOX_BASELINES) + " | watershed HD95 mm |"
    lines = [head, "|" + "---|" * (len(BOX_BASELINES) + 3)]
    for v in dict.fromkeys(r["volume"] for r in rows):
        by = {r["baseline"]: r for r in rows if r["volume"] == v}
        cells = " | ".join(f"{by[b]['slice_dice']:.3f} / {by[b]['dice']:.3f}" for b in BOX_BASELINES)
        lines.append(f"| {v} | {by[BOX_BASELINES[0]]['key_slice']} | {cells} | {by['watershed_carried']['hd95']:.1f} |")
    means = " | ".join(f"{np.mean([r['slice_dice'] for r in rows if r['baseline'] == b]):.3f} / "
                       f"{np.mean([r['dice'] for r in rows if r['baseline'] == b]):.3f}" for b in BOX_BASELINES)
    lines.append(f"| **mean** | | {means} | |")
    return "\n".join(lines)


def faz_table(root: Path) -> str:
    """Markdown: per case, FAZ baseline Dice on the three projections."""
    from napari_sam2med.octa.datasets import read_ground_truth, read_projections

    lines = ["| case | ILM_OPL | FULL | OPL_BM |", "|---|---|---|---|"]
    scores = []
    for sub, cases in OCTA_CASES:
        for case in cases:
            proj = read_projections(root / sub, case).images  # FULL, ILM_OPL, OPL_BM
            gt = read_ground_truth(root / sub, case, "FAZ")
            d = [dice(faz_baseline(proj[i]), gt) for i in (1, 0, 2)]
            scores.append(d)
            lines.append(f"| {case} | " + " | ".join(f"{x:.3f}" for x in d) + " |")
    lines.append("| **mean** | " + " | ".join(f"{x:.3f}" for x in np.mean(scores, 0)) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ct", default=str(SHARED / "ct_lesions"))
    p.add_argument("--octa", default=str(SHARED / "octa500_projections_3d"))
    args = p.parse_args()
    if Path(args.ct).is_dir():
        print("\n## CT lesions: box baselines (Dice 2D on the prompted slice / 3D)\n")
        print(ct_table(Path(args.ct)))
    if Path(args.octa).is_dir():
        print("\n## OCTA-500 FAZ baseline (Dice)\n")
        print(faz_table(Path(args.octa)))


if __name__ == "__main__":
    main()
