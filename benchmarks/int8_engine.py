"""int8 (dynamic quantisation of the linear layers) against the exact float32 ONNX engine (issue 15).

Each exported part (image encoder, memory attention, decoder + memory encoder) is quantised with
``onnxruntime.quantization.quantize_dynamic`` (int8 weights of every MatMul / Gemm, activations quantised
per run) and run by ONNX Runtime. Every object of the CT lesion volumes (``../shared/data/ct_lesions``)
and of the synthetic samples is prompted with its box on its largest slice and propagated both ways
(``eval.runner``, the model's crop mode), once with the exact engine and once with int8; the masks are
compared (IoU int8 vs exact, 3D and the worst slice) and both are scored against the ground truth.

    python benchmarks/int8_engine.py --model sam2med-small-ct --parts encoder memattn heads --threads 1

The engine is swapped in through ``engine.session.make_encoder`` (the evaluation builds its own sessions).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam2med.engine import run_to_end
from napari_sam2med.engine import session as session_module
from napari_sam2med.engine.encoders import RuntimeEngine
from napari_sam2med.engine.onnx_runtime import OrtRunner
from napari_sam2med.eval.runner import EvalConfig, evaluate_volume
from napari_sam2med.io import read_spacing
from napari_sam2med.sam2 import load_model
from napari_sam2med.train.data import LabeledVolume, discover

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct_lesions"


def quantized(path: Path) -> Path:
    """The int8 copy of an exported part (made once next to it)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name(path.stem + "-int8dyn.onnx")
    if not out.exists():
        tmp = out.with_suffix(".tmp.onnx")
        quantize_dynamic(str(path), str(tmp), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        tmp.replace(out)
    return out


def engine(model, folder, parts, threads):
    """The ONNX Runtime engine with the listed parts run in int8 (none: the exact engine)."""
    eng = RuntimeEngine(model, "onnx", folder)
    objs = {"encoder": eng.encoder, "memattn": eng.memory_attention(), "heads": eng.track_heads()}
    for p in parts:
        objs[p].session = OrtRunner(quantized(Path(objs[p].path)), threads)
    return eng


def volumes(data: Path, synthetic: bool, generated: str | None):
    for f in sorted(data.glob("*.npz")):
        vol = discover([f])[0]
        vol.spacing = read_spacing(f)
        yield vol
    if generated:
        yield from discover([generated])
    if synthetic:
        from napari_sam2med._sample_data import synthetic_timeseries, synthetic_volume

        img, lab = synthetic_volume()
        yield LabeledVolume("synthetic_volume", img, lab, (3.0, 1.0, 1.0))
        img, lab = synthetic_timeseries()
        yield LabeledVolume("synthetic_timeseries", img, lab, (1.0, 1.0, 1.0))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def run(model, vol, eng, crop, max_objects):
    session_module.make_encoder = lambda *_a, **_k: eng
    t0 = time.perf_counter()
    res = run_to_end(evaluate_volume(model, vol, EvalConfig(crop_context=crop, max_objects=max_objects)))
    return res, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2med-small-ct")
    p.add_argument("--crop-context", type=float, default=None, help="default: the model's")
    p.add_argument("--parts", nargs="+", default=["encoder", "memattn", "heads"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--no-synthetic", action="store_true", help="skip the napari sample volumes")
    p.add_argument("--generated", default="synthetic:12:970000:128",
                   help="generated volumes too (the model card's held-out set; '' for none)")
    p.add_argument("--max-objects", type=int, default=2)
    p.add_argument("--onnx-dir", default=None, help="export cache (default: $SAM2MED_CACHE/onnx)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu", progress=False)
    crop = args.crop_context if args.crop_context is not None else model.config.crop_context
    exact = engine(model, args.onnx_dir, [], args.threads)
    int8 = engine(model, args.onnx_dir, args.parts, args.threads)
    x = torch.rand(1, 3, model.image_size, model.image_size)
    for name, e in (("exact", exact), ("int8", int8)):
        e(x)
        t0 = time.perf_counter()
        for _ in range(20):
            e(x)
        print(f"encoder {name}: {1000 * (time.perf_counter() - t0) / 20:.1f} ms per slice")
    print(f"model {args.model}, crop {crop}, int8 parts {' '.join(args.parts)}, {args.threads} thread(s)\n")
    print("| volume | object | IoU int8 vs exact (3D) | worst slice IoU | Dice exact / int8 | s exact / int8 |")
    print("|---|---|---|---|---|---|")
    ious = []
    for vol in volumes(Path(args.data), not args.no_synthetic, args.generated):
        ref, t_ref = run(model, vol, exact, crop, args.max_objects)
        got, t_got = run(model, vol, int8, crop, args.max_objects)
        for row_ref, row_got in zip(ref.object_rows, got.object_rows):
            oid = row_ref["object"]
            a, b = ref.labels == oid, got.labels == oid
            per = [iou(a[z], b[z]) for z in range(len(a)) if a[z].any() or b[z].any()] or [1.0]
            ious.append(iou(a, b))
            print(f"| {vol.name} | {oid} | {ious[-1]:.4f} | {min(per):.4f} | {row_ref['dice']:.3f} / "
                  f"{row_got['dice']:.3f} | {t_ref:.1f} / {t_got:.1f} |")
    print(f"\nIoU int8 vs exact over {len(ious)} objects: min {min(ious):.4f}, mean {np.mean(ious):.4f} "
          f"(bar: >= 0.98 -> {'MET' if min(ious) >= 0.98 else 'NOT met'})")


if __name__ == "__main__":
    main()
