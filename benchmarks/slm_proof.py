"""SLM-SAM2 proof experiment (issue 12): SAM2 memory vs SLM memory, same base, same data, same steps.

Fine-tunes the same base weights twice through ``sam2med train`` (once ``--memory sam2``, once
``--memory slm``; everything else identical: data, seed, steps, preset, mask prompts on 3D clips,
SLM-SAM2's recipe), then scores the base and both fine-tuned models with ``sam2med evaluate
--protocol mask-one-slice`` on CT volumes that no run trained on, and prints one table (3D Dice and
over-propagation rate per volume) plus ``summary.json`` in ``--out``.

Usage (CPU, ~1 thread per run)::

    python benchmarks/slm_proof.py --base BASE.pt --model sam2med-small-ct --out /tmp/slm_proof \\
        --train ../shared/data/ct_lesions/CT_Lesion_000001_02_01_008-023.npz \\
                ../shared/data/ct_lesions/CT_Lesion_000002_03_01_035-047.npz synthetic:2000:31:128 \\
        --data-weights 0.3 0.3 0.4 \\
        --test ../shared/data/ct_lesions/CT_Lesion_000009_03_01_036-048.npz \\
               ../shared/data/ct_lesions/CT_Lesion_000010_01_01_078-090.npz \\
        --steps 200 --crop-context 3

The last checkpoint of each run is evaluated (no selection on the test volumes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def paper_init_base(a, path: Path) -> str:
    """The base weights plus SLM modules initialised as SLM-SAM2 does (short branch a full copy of the long one)."""
    import torch

    from napari_sam2med.sam2 import SLMConfig, load_model
    from napari_sam2med.sam2.checkpoint import save_checkpoint
    from napari_sam2med.sam2.slm import attach_slm

    model = load_model(a.model, checkpoint=a.base, device="cpu", offline=True, progress=False)
    attach_slm(model, SLMConfig(short_init_scale=1.0))
    torch.manual_seed(a.seed)
    return str(save_checkpoint(model, path))


def _cli(*args: str, log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAM2MED_OFFLINE": "1"}
    t0 = time.time()
    with open(log, "w") as fh:
        rc = subprocess.call([sys.executable, "-m", "napari_sam2med.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                             env=env)
    if rc != 0:
        raise SystemExit(f"sam2med {args[0]} failed (exit {rc}); see {log}")
    print(f"  sam2med {args[0]} done in {time.time() - t0:.0f} s ({log.name})", flush=True)


def _train_args(a, arm: str, base: str, out: Path) -> list[str]:
    weights = ["--data-weights", *map(str, a.data_weights)] if a.data_weights else []
    return ["train", "--data", *a.train, *weights, "--out", str(out), "--val", "0", "--val-data", *a.val_data,
            "--model", a.model, "--checkpoint", base, "--device", "cpu", "--memory", arm,
            "--preset", a.preset, "--mode", "3d", "--frames", str(a.frames), "--objects", "1",
            "--prompt", "mask", "--steps", str(a.steps), "--lr", str(a.lr), "--warmup", str(a.steps // 10),
            "--seed", str(a.seed), "--val-every", "0", "--threads", "1", "--no-progress", "--overwrite",
            *(["--crop", "--crop-context", str(a.crop_context)] if a.crop_context else [])]


def _eval_args(a, ckpt: str, memory: str, out: Path) -> list[str]:
    return ["evaluate", "--data", *a.test, "--out", str(out), "--protocol", "mask-one-slice", "--memory", memory,
            "--model", a.model, "--checkpoint", ckpt, "--device", "cpu", "--no-overlays", "--no-progress",
            "--overwrite", *(["--crop-context", str(a.crop_context)] if a.crop_context else [])]


def _volumes(eval_dir: Path) -> dict[str, dict]:
    with open(eval_dir / "volumes.csv") as fh:
        return {r["volume"]: {"dice": float(r["dice"]), "over_propagation": float(r["over_propagation"])}
                for r in csv.DictReader(fh)}


def slm_drift(base: str, tuned: str) -> dict:
    """How far training moved the SLM modules from their near-identity start (read from checkpoints)."""
    import torch

    def sd(path):
        d = torch.load(path, map_location="cpu", weights_only=True)
        return d.get("model", d)

    b, t = sd(base), sd(tuned)
    gammas = [v.float().abs().mean().item() for k, v in t.items() if k.startswith("recent_memory_fuser.") and k.endswith("gamma")]
    return {"short_norm_weight_abs_mean": t["recent_memory_attention.norm.weight"].float().abs().mean().item(),
            "long_norm_weight_abs_mean": t["memory_attention.norm.weight"].float().abs().mean().item(),
            "base_long_norm_weight_abs_mean": b["memory_attention.norm.weight"].float().abs().mean().item(),
            "fuser_gamma_abs_mean": gammas}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="base checkpoint (both arms start from it)")
    p.add_argument("--model", default="sam2med-small-ct")
    p.add_argument("--train", nargs="+", required=True, help="--data entries to fine-tune on")
    p.add_argument("--data-weights", nargs="+", type=float, default=None, help="sampling weight of each --train entry")
    p.add_argument("--test", nargs="+", required=True, help="held-out labelled volumes to evaluate on")
    p.add_argument("--val-data", nargs="+", default=["synthetic:2:424242:128"], help="monitoring only")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--preset", default="decoder", help="what trains besides the SLM modules (same in both arms)")
    p.add_argument("--crop-context", type=float, default=3.0, help="0: no cropping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", action="store_true", help="train the arms at once")
    p.add_argument("--paper-init", action="store_true",
                   help="a third arm: SLM modules initialised as SLM-SAM2 does (full copy, not near-identity)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    procs = []
    arms = {"sam2": ("sam2", a.base), "slm": ("slm", a.base)}  # name -> (memory, base checkpoint)
    if a.paper_init:
        arms["slm_paper_init"] = ("slm", paper_init_base(a, out / "base_slm_paper_init.pt"))
    for arm, (memory, base) in arms.items():
        args = _train_args(a, memory, base, out / f"train_{arm}")
        print(f"train {arm}: sam2med {' '.join(args)}", flush=True)
        if a.parallel:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "SAM2MED_OFFLINE": "1"}
            log = open(out / f"train_{arm}.log", "w")  # noqa: SIM115 (closed after the process ends)
            procs.append((arm, log, subprocess.Popen([sys.executable, "-m", "napari_sam2med.cli", *args],
                                                     stdout=log, stderr=subprocess.STDOUT, env=env)))
        else:
            _cli(*args, log=out / f"train_{arm}.log")
    for arm, log, proc in procs:
        rc = proc.wait()
        log.close()
        if rc != 0:
            raise SystemExit(f"training {arm} failed; see {out / f'train_{arm}.log'}")
    train_s = time.time() - t0
    runs = {"base (sam2 memory)": (a.base, "sam2"), "base (slm memory, untrained)": (a.base, "slm")}
    if a.paper_init:
        runs["base + SLM paper init (untrained)"] = (arms["slm_paper_init"][1], "slm")
    runs.update({f"fine-tuned, {arm}": (str(out / f"train_{arm}" / "last.pt"), memory)
                 for arm, (memory, _) in arms.items()})
    results = {}
    for i, (label, (ckpt, memory)) in enumerate(runs.items()):
        print(f"evaluate {label}", flush=True)
        _cli(*_eval_args(a, ckpt, memory, out / f"eval_{i}"), log=out / f"eval_{i}.log")
        results[label] = _volumes(out / f"eval_{i}")
    vols = sorted(next(iter(results.values())))
    lines = ["| model | " + " | ".join(f"{v} Dice / over-prop." for v in vols) + " |",
             "|---|" + "---|" * len(vols)]
    for label, per in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{per[v]['dice']:.3f} / {per[v]['over_propagation']:.3f}"
                                                   for v in vols) + " |")
    table = "\n".join(lines)
    print(table)
    drift = {arm: slm_drift(a.base, str(out / f"train_{arm}" / "last.pt")) for arm in arms if arm != "sam2"}
    print("SLM modules after training:", json.dumps(drift))
    summary = {"args": vars(a), "train_seconds": train_s, "total_seconds": time.time() - t0, "results": results,
               "table": table, "slm_drift": drift}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
