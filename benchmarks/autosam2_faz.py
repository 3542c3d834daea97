"""AutoSAM2 FAZ (issue 13): a prompt encoder for frozen ``sam2med-small-ct``, no clicks, vs the classical baseline.

    python benchmarks/autosam2_faz.py --protocol loco  [--out runs/autosam/loco.json]
    python benchmarks/autosam2_faz.py --protocol final --save models/autosam2_faz_v1.pt
    python benchmarks/autosam2_faz.py --protocol dev   (recipe choice: train 10301 10303 10001 10003, score 10302 10002)
    python benchmarks/autosam2_faz.py --protocol bound (what SAM2 can do at all: GT mask prompt / per-image best prompt)
    python benchmarks/autosam2_faz.py --protocol ct    (CT lesions: train 000001+000002, pick steps on 000009, report 000010)
    [--checkpoint SAM2.pt]  (default: the packaged sam2med-small-ct weights)
    [--ensemble K]  (K prompt encoders per model, seeds seed*K+i, logits averaged)  [--warp]  (warp augmentation)
    [--channels "OCTA(ILM_OPL)" "OCTA(FULL)" ...]  (projections stacked as the prompt encoder's input; SAM2 sees the first)
    [--stretch]  (percentile-stretch the channels after the first)  [--relocate Z]  (second-pass locator, zoom Z)

Data: the six OCTA-500 cases of ../shared/data/octa500_projections_3d (3M 10301-10303, 304 px; 6M
10001-10003, 400 px), ILM_OPL projection, ``GT_FAZ``. The recipe is crop mode (``auto.predict``):
the encoder's auxiliary head locates the FAZ on the whole slice, SAM2 is prompted in a window 2.25x its
size. LOCO: each case is scored by an encoder trained on the other five; ``eval.baselines.faz_baseline``
is scored on the same case. 1 thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam2med.auto.predict import mask_box, predict_mask
from napari_sam2med.auto.training import AutoTrainConfig, config_record, new_prompt_net, train_prompt_net
from napari_sam2med.engine.metrics import dice
from napari_sam2med.eval.baselines import faz_baseline
from napari_sam2med.octa.datasets import read_ground_truth, read_projections
from napari_sam2med.sam2 import get_config, load_model
from napari_sam2med.sam2.checkpoint import resolve_checkpoint, sha256_of

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = [("OCTA_3M", c) for c in ("10301", "10302", "10303")] + [("OCTA_6M", c) for c in ("10001", "10002", "10003")]
DEV_VAL = ("10302", "10002")


def recipe(args) -> AutoTrainConfig:
    return AutoTrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, input_size=128, width=args.width,
                           sparse_tokens=args.tokens, tta=args.tta, crop_context=args.context, context_range=tuple(args.context_range),
                           jitter=args.jitter, locate_size=args.locate_size, locate_batch=args.locate_batch,
                           aux_weight=0.5, refine=args.refine, augment=True, warp=args.warp, seed=args.seed,
                           relocate=args.relocate, input_channels=tuple(args.channels), stretch=args.stretch)


def load_faz(root: Path = DATA / "octa500_projections_3d", channels: tuple[str, ...] = ()):
    """[(case, image in [0, 1], FAZ mask)] of the six cases: the OCTA ILM_OPL projection, or with
    ``channels`` (names such as ``"OCTA(ILM_OPL)"``, ``"OCT(FULL)"``) those projections as (Y, X, C)."""
    from napari_sam2med.octa.datasets import PROJECTION_NAMES

    out = []
    for folder, case in CASES:
        sets = {m: read_projections(root / folder, case, m).images for m in {c.split("(")[0] for c in channels} | {"OCTA"}}
        pick = [sets[c.split("(")[0]][PROJECTION_NAMES.index(c.split("(")[1].rstrip(")"))] for c in channels]
        img = (np.stack(pick, -1) if channels else sets["OCTA"][1]).astype(np.float32) / 255.0
        out.append((case, img, read_ground_truth(root / folder, case, "FAZ")))
    return out


def _grey(img: np.ndarray) -> np.ndarray:
    return img[..., 0] if img.ndim == 3 else img


def train(sam2, data, cfg, evaluate=None, every: int = 0):
    """Train on ``data``; with ``evaluate`` call it on the net every ``every`` steps (dev / selection)."""
    torch.manual_seed(cfg.seed)
    net = new_prompt_net(sam2, cfg)
    gen, curve = train_prompt_net(sam2, [d[1] for d in data], [d[2] for d in data], cfg, net=net), []
    t0 = time.perf_counter()
    while True:
        try:
            st = next(gen)
        except StopIteration as stop:
            return stop.value, curve, time.perf_counter() - t0
        if evaluate is not None and every and (st.step % every == 0):
            net.eval()
            curve.append({"step": st.step, **evaluate(net)})
            net.train()
            print(json.dumps(curve[-1]), flush=True)


def train_ensemble(sam2, data, cfg, k: int, evaluate=None, every: int = 0):
    """``train`` with ``k`` > 1: ``k`` members (seeds ``seed * k + i``) combined into a PromptEnsemble
    (evaluated at the end only); returns (result with ``.net`` and the members' joint ``.history``, [], seconds)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from napari_sam2med.auto.prompt_net import PromptEnsemble

    if k <= 1:
        return train(sam2, data, cfg, evaluate, every)
    runs = [train(sam2, data, replace(cfg, seed=cfg.seed * k + i)) for i in range(k)]
    net = PromptEnsemble([r[0].net for r in runs]).eval()
    hist = [h for r in runs for h in r[0].history[-50:]]
    curve = [{"step": cfg.steps, **evaluate(net)}] if evaluate is not None else []
    if curve:
        print(json.dumps(curve[-1]), flush=True)
    return SimpleNamespace(net=net, history=hist), curve, sum(r[2] for r in runs)


def score(sam2, net, case, img, gt, variants: bool = False) -> dict:
    """Dice of the full no-click pipeline and of SAM2 prompted by the encoder in the ground-truth window
    (with ``variants`` also without flip/rotation averaging, without re-centring and with the second-pass locator)."""
    from dataclasses import replace

    from napari_sam2med.auto.predict import _sam2_in_window
    from napari_sam2med.engine.crop import MIN_SIDE, window_from_box

    t0 = time.perf_counter()
    mask, s = predict_mask(sam2, net, img)
    dt = time.perf_counter() - t0
    win = window_from_box(mask_box(gt), net.config.crop_context, MIN_SIDE, gt.shape)
    row = {"case": case, "autosam2_dice": round(dice(mask, gt), 4),
           "gt_window_dice": round(dice(_sam2_in_window(sam2, net, img, win)[0], gt), 4),
           "score": round(s, 2), "predict_s": round(dt, 3)}
    if variants:
        cfg = net.config
        for tta, refine in ((1, 0), (1, 1), (8, 0), (8, 1), (8, 2)):
            net.config = replace(cfg, tta=tta, refine=refine)
            row[f"tta{tta}_refine{refine}"] = round(dice(predict_mask(sam2, net, img)[0], gt), 4)
        for rel in (3.0, 4.5):  # second-pass locator (PromptNetConfig.relocate), v1 rule otherwise
            net.config = replace(cfg, relocate=rel)
            row[f"relocate{rel}"] = round(dice(predict_mask(sam2, net, img)[0], gt), 4)
        net.config = cfg
    return row


def load_sam2(args):
    name = "sam2med-small-ct"
    path = resolve_checkpoint(name, args.checkpoint, offline=True)
    sam2 = load_model(name, checkpoint=path, device="cpu")
    return sam2, {"sam2": name, "checkpoint": str(path), "checkpoint_sha256": sha256_of(path),
                  "registry_sha256": get_config(name).weights.sha256}


def run_loco(sam2, data, cfg, folds=None, ens: int = 1) -> dict:
    rows = []
    for k, (case, img, gt) in enumerate(data):
        if folds and case not in folds:
            continue
        res, _, secs = train_ensemble(sam2, [d for j, d in enumerate(data) if j != k], cfg, ens)
        row = score(sam2, res.net, case, img, gt)
        row.update(baseline_dice=round(dice(faz_baseline((_grey(img) * 255).astype(np.uint8)), gt), 4), train_s=round(secs, 1),
                   train_dice_last50=round(float(np.mean([h["dice"] for h in res.history[-50:]])), 4))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return loco_summary(rows)


def loco_summary(rows: list[dict]) -> dict:
    return {"rows": rows, **{f"mean_{k}": round(float(np.mean([r[k] for r in rows])), 4)
                             for k in ("autosam2_dice", "gt_window_dice", "baseline_dice")}}


def run_dev(sam2, data, cfg, every: int, save: str | None = None, ens: int = 1) -> dict:
    train_set = [d for d in data if d[0] not in DEV_VAL]
    val = [d for d in data if d[0] in DEV_VAL]

    def evaluate(net):
        rows = [score(sam2, net, *d, variants=True) for d in val]
        return {r["case"]: {k: v for k, v in r.items() if k != "case"} for r in rows}
    res, curve, secs = train_ensemble(sam2, train_set, cfg, ens, evaluate, every)
    if save:
        from napari_sam2med.auto.prompt_net import save_prompt_net
        save_prompt_net(save, res.net, sam2)
    return {"curve": curve, "train_s": round(secs, 1),
            "train_dice_last50": round(float(np.mean([h["dice"] for h in res.history[-50:]])), 4)}


def run_final(sam2, data, cfg, save: str | None, info: dict, ens: int = 1) -> dict:
    from napari_sam2med.auto.prompt_net import save_prompt_net

    res, _, secs = train_ensemble(sam2, data, cfg, ens)
    rows = [score(sam2, res.net, *d) for d in data]  # training cases: a sanity check, not accuracy
    out = {"train_s": round(secs, 1), "train_case_rows": rows}
    if save:
        extra = {"steps": cfg.steps, "train_seconds": round(secs, 1), "members": ens, "cases": ",".join(d[0] for d in data),
                 "recipe": json.dumps(config_record(cfg))}
        save_prompt_net(save, res.net, sam2, extra=extra, checkpoint_sha256=info["checkpoint_sha256"])
        out.update(saved=save, saved_sha256=sha256_of(save), saved_bytes=Path(save).stat().st_size)
    return out


def run_bound(sam2, data, contexts=(2.0, 2.25, 3.0), steps: int = 300) -> dict:
    """What frozen SAM2 can give at all in a ground-truth window: the 32 px decoder grid (GT down- and
    up-sampled), the GT mask / box as SAM2's own prompts, and the best prompt found per image (dense +
    2 sparse embeddings optimised against the GT: an oracle no encoder can beat on average)."""
    import torch.nn.functional as F

    from napari_sam2med.auto.prompt_net import auto_decode
    from napari_sam2med.engine.crop import MIN_SIDE, cut, paste, window_from_box
    from napari_sam2med.engine.preprocess import frame_to_tensor
    from napari_sam2med.sam2.model import PointInputs

    sam2.requires_grad_(False)
    s, q = sam2.image_size, sam2.image_size // 4

    def back(logits, win, shape):
        up = F.interpolate(logits.float(), size=(win[2], win[2]), mode="bilinear", align_corners=False)
        return paste((up[0, 0] > 0).numpy(), win, shape)
    rows = []
    for case, img, gt in data:
        row = {"case": case}
        for ctx in list(contexts) + [0]:
            win = window_from_box(mask_box(gt), ctx, MIN_SIDE, gt.shape) if ctx else (0, 0, max(gt.shape))
            y = torch.from_numpy(cut(gt, win).astype(np.float32))[None, None]
            yq = (F.interpolate(y, size=(q, q), mode="area") >= 0.5).float()
            x = frame_to_tensor(cut(img, win, axes=(0, 1)), s)
            with torch.no_grad():
                feats = sam2.encode_image(x)
                ys = F.interpolate(y, size=(s, s), mode="area")
                pix = sam2.condition_on_memory(feats, None)
                low = sam2.forward_sam_heads(pix, feats.high_res, None, ys * 20 - 10, False)[2]
                r0, c0, r1, c1 = mask_box(gt)
                k = s / win[2]
                corners = torch.tensor([[[(c0 - win[1]) * k, (r0 - win[0]) * k], [(c1 - win[1]) * k, (r1 - win[0]) * k]]])
                box = PointInputs(corners.float(), torch.tensor([[2, 3]], dtype=torch.int32))
                box_low = sam2.forward_sam_heads(pix, feats.high_res, box, None, sam2.use_multimask(box))[2]
            dense = torch.zeros(1, sam2.config.d_model, sam2.config.feat_size, sam2.config.feat_size, requires_grad=True)
            sparse = torch.zeros(1, 2, sam2.config.d_model, requires_grad=True)
            opt = torch.optim.Adam([dense, sparse], lr=0.1)
            for _ in range(steps):
                lo = auto_decode(sam2, feats, sparse, dense, gate=False)[0]
                p = torch.sigmoid(lo)
                loss = 1 - (2 * (p * yq).sum() + 1) / (p.sum() + yq.sum() + 1) + F.binary_cross_entropy_with_logits(lo, yq)
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                best = auto_decode(sam2, feats, sparse, dense, gate=False)[0]
            key = f"ctx{ctx}" if ctx else "whole"
            row[key] = {"grid": round(dice(back(yq * 20 - 10, win, gt.shape), gt), 4),
                        "gt_mask_prompt": round(dice(back(low, win, gt.shape), gt), 4),
                        "gt_box_prompt": round(dice(back(box_low, win, gt.shape), gt), 4),
                        "best_prompt": round(dice(back(best, win, gt.shape), gt), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "case"]
    return {"rows": rows, "mean": {k: {m: round(float(np.mean([r[k][m] for r in rows])), 4) for m in rows[0][k]}
                                   for k in keys}}


def run_ct(sam2, cfg, every: int, root: Path) -> dict:
    """CT lesions, per slice: train on 000001+000002, choose the step on 000009, report 000010."""
    def vol(tag):
        z = np.load(next(root.glob(f"CT_Lesion_{tag}_*.npz")))
        return [(f"{tag}/{i}", im.astype(np.float32) / 255.0, g > 0) for i, (im, g) in enumerate(zip(z["imgs"], z["gts"]))]

    def per_slice(net, slices):
        pred = [predict_mask(sam2, net, im)[0] for _, im, _ in slices]
        gts = [g for *_, g in slices]
        d2 = [dice(p, g) for p, g in zip(pred, gts) if g.any() or p.any()]
        return {"mean_slice_dice": round(float(np.mean(d2)), 4), "volume_dice": round(dice(np.stack(pred), np.stack(gts)), 4),
                "lesion_slices_found": int(sum(bool((p & g).any()) for p, g in zip(pred, gts) if g.any())),
                "lesion_slices": int(sum(g.any() for g in gts)),
                "false_slices": int(sum(p.any() and not g.any() for p, g in zip(pred, gts)))}
    train_set, sel, test = vol("000001") + vol("000002"), vol("000009"), vol("000010")
    snaps = {}

    def evaluate(net):
        r = per_slice(net, sel)
        snaps[len(snaps)] = ({k: v.detach().clone() for k, v in net.state_dict().items()}, r)
        return {"selection": r}
    res, curve, secs = train(sam2, train_set, cfg, evaluate, every)
    best = max(snaps, key=lambda i: snaps[i][1]["mean_slice_dice"])
    res.net.load_state_dict(snaps[best][0])
    res.net.eval()
    return {"curve": curve, "chosen_step": curve[best]["step"], "test_000010": per_slice(res.net, test), "train_s": round(secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="loco", choices=("loco", "final", "dev", "bound", "ct"))
    ap.add_argument("--checkpoint", default=None, help="sam2med-small-ct weights (default: the packaged file)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--context", type=float, default=2.25)
    ap.add_argument("--context-range", type=float, nargs=2, default=(1.8, 3.0))
    ap.add_argument("--jitter", type=float, default=0.12, help="window centre shift in training (fraction of side)")
    ap.add_argument("--locate-size", type=int, default=256)
    ap.add_argument("--locate-batch", type=int, default=1)
    ap.add_argument("--refine", type=int, default=1)
    ap.add_argument("--stretch", action="store_true", help="percentile-stretch the channels after the first")
    ap.add_argument("--relocate", type=float, default=0.0, help="second-pass locator zoom (0: off)")
    ap.add_argument("--tta", type=int, default=8, help="flips / rotations averaged at inference")
    ap.add_argument("--tokens", type=int, default=4, help="sparse prompt tokens")
    ap.add_argument("--warp", action="store_true", help="also warp samples (rotation, scale, stretch, elastic)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channels", nargs="*", default=[], help="projections fed to the prompt encoder, e.g. "
                    "'OCTA(ILM_OPL)' 'OCTA(FULL)' 'OCTA(OPL_BM)' (first = SAM2's input; default: SAM2's input only)")
    ap.add_argument("--ensemble", type=int, default=1, help="prompt encoders per model (seeds seed*K+i), logits averaged")
    ap.add_argument("--every", type=int, default=100, help="dev / ct: score every N steps")
    ap.add_argument("--save", default=None, help="final: write the prompt encoder here")
    ap.add_argument("--out", default=None, help="JSON summary (default runs/autosam/<protocol>.json)")
    ap.add_argument("--folds", nargs="*", default=None, help="loco: only these held-out cases (run parts in parallel)")
    ap.add_argument("--merge", nargs="*", default=None, help="loco: merge the rows of these part JSONs into --out")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: [c for _, c in CASES].index(r["case"]))
        merged = {**{k: v for k, v in parts[0].items() if k not in ("rows", "wall_s")},
                  "wall_s": round(sum(p["wall_s"] for p in parts), 1), "parts": args.merge, **loco_summary(rows)}
        Path(args.out).write_text(json.dumps(merged, indent=1))
        print(json.dumps({k: v for k, v in merged.items() if k.startswith("mean_")}))
        return
    torch.set_num_threads(1)
    sam2, info = load_sam2(args)
    cfg = recipe(args)
    t0 = time.perf_counter()
    if args.protocol == "bound":
        result = run_bound(sam2, load_faz())
    elif args.protocol == "ct":
        result = run_ct(sam2, cfg, args.every, DATA / "ct_lesions")
    else:
        data = load_faz(channels=tuple(args.channels))
        if args.channels and args.channels[0] != "OCTA(ILM_OPL)":
            print("note: SAM2 sees", args.channels[0], "(not the OCTA ILM_OPL projection)", flush=True)
        k = args.ensemble
        result = {"loco": lambda: run_loco(sam2, data, cfg, args.folds, k),
                  "dev": lambda: run_dev(sam2, data, cfg, args.every, args.save, k),
                  "final": lambda: run_final(sam2, data, cfg, args.save, info, k)}[args.protocol]()
    summary = {"protocol": args.protocol, **info, "recipe": config_record(cfg), "ensemble": args.ensemble, "wall_s": round(time.perf_counter() - t0, 1),
               "load": list(np.round(__import__("os").getloadavg(), 2)), **result}
    out = Path(args.out or Path(__file__).resolve().parents[1] / "runs" / "autosam" / f"{args.protocol}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k.startswith(("mean_", "wall_s", "train_s", "saved"))}))


if __name__ == "__main__":
    main()
