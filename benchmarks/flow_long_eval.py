"""Long-video and real line-scan checks for ``flow_benchmark.py --long`` / ``--linescan``.

* :func:`long_curve`: one method over the long held-out realistic set
  (``flow.synthetic.long_set``): in-vessel EPE per window of ``window`` pairs, the first /
  last 100 pairs, 1/3/5-px rates, pairs/s.
* :func:`linescan_check`: renders a straight vessel whose intensity profile at frame ``t``
  is real two-photon scan line ``t`` (``shared/data/flow_linescans``), runs the method and
  compares the speed along the vessel with the reference speed of the recording.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

WINDOW = 50

#: name -> (file, columns used, reference px/line along +column, source of the reference)
LINESCANS = {
    "hayashi_Image18": ("hayashi_2plinescan/Image18_green_TxHxW.tif", (0, 512), -5.8,
                        "median of 22 fitted streaks (5.2-6.6), toward column 0"),
    "kymflow_Capillary1": ("kymflow_2p_linescan/Capillary1_0001_TxHxW.tif", (0, 38), -4.8,
                           "Radon vel_mean -1.17 mm/s = -4.8 px/line"),
}


def _estimator(method: str, weights: str | None, span: int = 1):
    from napari_sam2med.flow.command import make_estimator

    return make_estimator(method, weights, device="cpu", span=span)


def long_curve(method: str, weights: str | None, n: int, n_frames: int, size: int, seed: int,
               window: int = WINDOW, motion: bool = False, span: int = 1) -> dict:
    """Per-window in-vessel EPE of ``method`` over ``long_set(n, n_frames, size, seed)``.

    ``motion``: the ``LONG_MOTION`` variant (tissue motion; each pair is scored in the vessel
    mask of its first frame). ``span``: SAM2Flow's k-frame fusion (``SAM2FlowEstimator(span=)``).
    """
    import torch

    torch.set_num_threads(1)
    from napari_sam2med.engine.progress import run_to_end
    from napari_sam2med.flow.metrics import MetricAccumulator
    from napari_sam2med.flow.runner import estimate_flow
    from napari_sam2med.flow.synthetic import LONG_MOTION, long_set, prompts_for

    n_pairs = n_frames - 1
    sums, counts = np.zeros(n_pairs), np.zeros(n_pairs)
    overall = MetricAccumulator()
    seconds, pairs, flagged = 0.0, 0, 0
    for video in long_set(n, n_frames, size, seed, **(LONG_MOTION if motion else {})):
        estimator = _estimator(method, weights, span)
        clock = [time.perf_counter()]

        def on_step(progress, video=video, clock=clock):
            nonlocal seconds, pairs
            seconds += time.perf_counter() - clock[0]
            t = progress.step.index
            mask = video.mask(t)
            err = np.hypot(*(progress.step.flow - video.flow[t]).transpose(2, 0, 1))[mask]
            sums[t] += err.sum()
            counts[t] += err.size
            overall.update(progress.step.flow, video.flow[t], mask)
            pairs += 1
            clock[0] = time.perf_counter()

        result = run_to_end(estimate_flow(video.frames, prompts_for(video), estimator), on_step)
        flagged += len(result.implausible_pairs)
    per_pair = sums / np.maximum(counts, 1)
    edges = list(range(0, n_pairs, window))
    windows = [float(sums[a : a + window].sum() / max(counts[a : a + window].sum(), 1)) for a in edges]
    first = float(sums[:100].sum() / counts[:100].sum())
    last = float(sums[-100:].sum() / counts[-100:].sum())
    m = overall.result()
    return {
        "method": method, "motion": motion, "videos": n, "frames": n_frames, "size": size, "seed": seed, "pairs": pairs,
        "epe": m.epe, "acc1": m.acc[1.0], "acc3": m.acc[3.0], "acc5": m.acc[5.0],
        "first100": first, "last100": last, "last_over_first": last / first,
        "windows": windows, "window": window, "per_pair": per_pair.tolist(),
        "pairs_per_s": pairs / seconds if seconds else float("nan"), "implausible_pairs": flagged,
    }


def long_markdown(rows: list[dict]) -> str:
    """Markdown table of :func:`long_curve` rows (same set)."""
    if not rows:
        return ""
    r0 = rows[0]
    n_w, w = len(r0["windows"]), r0["window"]
    heads = [f"{a}-{min(a + w, r0['frames'] - 1) - 1}" for a in range(0, r0["frames"] - 1, w)]
    variant = " (LONG_MOTION: tissue motion, tail to 15 px/frame)" if r0.get("motion") else ""
    text = (f"\nLong held-out set{variant}: {r0['videos']} realistic videos x {r0['frames']} frames, "
            f"{r0['size']}x{r0['size']} px, seeds {r0['seed']}..{r0['seed'] + r0['videos'] - 1}; "
            f"in-vessel EPE (px) per window of {w} pairs.\n\n")
    text += ("| method | EPE | <1px | <3px | <5px | first 100 | last 100 | last/first | "
             + " | ".join(heads) + " |\n|" + "---|" * (8 + n_w) + "\n")
    for r in rows:
        text += (f"| {r['method']} | {r['epe']:.3f} | {r['acc1']:.3f} | {r['acc3']:.3f} | {r['acc5']:.3f} "
                 f"| {r['first100']:.3f} | {r['last100']:.3f} | {r['last_over_first']:.2f} | "
                 + " | ".join(f"{x:.2f}" for x in r["windows"]) + " |\n")
    return text


def linescan_video(lines: np.ndarray, cols: tuple[int, int], n_frames: int, height: int = 48,
                   vessel_width: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) float32 video of a horizontal vessel whose profile at frame ``t`` is ``lines[t]``.

    Returns the video and the vessel mask. Outside the vessel: the recording's plasma level
    times 0.8 plus mild noise (static tissue). Pad width to a multiple of 32 is left to the model.
    """
    rng = np.random.default_rng(seed)
    prof = lines[:n_frames, cols[0] : cols[1]].astype(np.float32)
    prof = prof / max(float(np.percentile(lines, 99.9)), 1.0)
    t, w = prof.shape
    top = (height - vessel_width) // 2
    mask = np.zeros((height, w), bool)
    mask[top : top + vessel_width] = True
    tissue = 0.8 * float(np.median(prof)) + 0.03 * rng.standard_normal((height, w)).astype(np.float32)
    video = np.broadcast_to(tissue, (t, height, w)).copy()
    video[:, mask] = np.repeat(prof[:, None, :], vessel_width, axis=1).reshape(t, -1)
    return np.clip(video, 0.0, 1.0), mask


def linescan_check(method: str, weights: str | None, root: str, name: str, n_frames: int = 150) -> dict:
    """Median speed along the vessel (px/frame, signed along +column) vs the recording's reference."""
    import tifffile
    import torch

    from napari_sam2med.engine.progress import run_to_end
    from napari_sam2med.flow.runner import estimate_flow
    from napari_sam2med.flow.types import RoiPrompt

    torch.set_num_threads(1)
    rel, cols, ref, source = LINESCANS[name]
    lines = tifffile.imread(str(Path(root) / rel))[:, 0]
    video, mask = linescan_video(lines, cols, n_frames)
    rows, cols_idx = np.nonzero(mask)
    centre = (float(rows.mean()), float(cols_idx.mean()))
    rois = [RoiPrompt(1, np.array([centre, (centre[0], centre[1] - 10.0), (centre[0], centre[1] + 10.0)]),
                      np.array([1, 1, 1]))]
    along = []
    run_to_end(estimate_flow(video, rois, _estimator(method, weights)),
               lambda p: along.append(float(np.median(p.step.flow[..., 1][mask]))))
    along = np.array(along)
    med = float(np.median(along))
    return {"method": method, "recording": name, "frames": len(video), "reference": ref, "source": source,
            "median_speed": med, "rel_error": abs(med - ref) / abs(ref),
            "p10": float(np.percentile(along, 10)), "p90": float(np.percentile(along, 90))}


def linescan_markdown(rows: list[dict]) -> str:
    """Markdown table of :func:`linescan_check` rows."""
    text = ("\nReal-speed check: straight vessel rendered from real two-photon line scans (profile at frame t = "
            "line t); median over frames of the median flow along the vessel (px/frame, sign = +column).\n\n"
            "| recording | frames | reference | method | median speed | rel. error | p10 | p90 |\n"
            "|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        text += (f"| {r['recording']} | {r['frames']} | {r['reference']:+.2f} ({r['source']}) | {r['method']} "
                 f"| {r['median_speed']:+.2f} | {r['rel_error']:.2f} | {r['p10']:+.2f} | {r['p90']:+.2f} |\n")
    return text


def _sam2flow_flows(model, video, rois) -> np.ndarray:
    from napari_sam2med.engine.progress import run_to_end
    from napari_sam2med.flow.estimators.sam2flow import SAM2FlowEstimator
    from napari_sam2med.flow.runner import estimate_flow

    flows = []
    run_to_end(estimate_flow(video, rois, SAM2FlowEstimator(model)), lambda p: flows.append(p.step.flow))
    return np.stack(flows)


def fb_error(model, video, rois, mask) -> float:
    """Mean forward-backward inconsistency ``|F_fwd(p) + F_bwd(p + F_fwd(p))|`` inside ``mask`` (px)."""
    from scipy import ndimage as ndi

    fwd = _sam2flow_flows(model, video, rois)
    bwd = _sam2flow_flows(model, video[::-1].copy(), rois)[::-1]  # bwd[t]: frame t+1 -> t
    rows, cols = np.nonzero(mask)
    errs = []
    for f, b in zip(fwd, bwd):
        r, c = rows + f[rows, cols, 0], cols + f[rows, cols, 1]
        back = np.stack([ndi.map_coordinates(b[..., k], [r, c], order=1, mode="nearest") for k in range(2)], -1)
        errs.append(np.linalg.norm(f[rows, cols] + back, axis=-1).mean())
    return float(np.mean(errs))


def adapt_check(weights: str | None, steps: int, root: str | None, n_frames: int = 300, size: int = 64) -> dict:
    """EPE on one long held-out video and FB consistency on a line-scan video, before / after adaptation.

    Adaptation uses only the video itself (no ground truth), as ``sam2med flow-adapt`` does.
    """
    import copy

    import torch

    from napari_sam2med.engine.progress import run_to_end
    from napari_sam2med.flow.adapt import AdaptConfig, adapt_flow
    from napari_sam2med.flow.estimators.sam2flow import load_flow_model
    from napari_sam2med.flow.synthetic import LONG_SEED0, long_set, prompts_for
    from napari_sam2med.flow.types import RoiPrompt

    torch.set_num_threads(1)
    base = load_flow_model(weights)
    out = {"steps": steps}
    video = next(long_set(1, n_frames, size, LONG_SEED0))
    rois, mask = prompts_for(video), video.vessel_ids > 0

    def epe(model):
        flows = _sam2flow_flows(model, video.frames, rois)
        return float(np.mean([np.linalg.norm(f - g, axis=-1)[mask].mean() for f, g in zip(flows, video.flow)]))

    t0 = time.perf_counter()
    adapted = run_to_end(adapt_flow(video.frames, rois, copy.deepcopy(base), AdaptConfig(steps=steps))).model
    out["synthetic"] = {"epe_before": epe(base), "epe_after": epe(adapted), "adapt_s": time.perf_counter() - t0}
    if root is not None:
        import tifffile

        rel, cols, _, _ = LINESCANS["hayashi_Image18"]
        lines = tifffile.imread(str(Path(root) / rel))[:, 0]
        clip, vmask = linescan_video(lines, cols, 120)
        r, c = np.nonzero(vmask)
        prompt = [RoiPrompt(1, np.array([[r.mean(), c.mean()], [r.mean(), c.mean() - 10]]), np.array([1, 1]))]
        tuned = run_to_end(adapt_flow(clip, prompt, copy.deepcopy(base), AdaptConfig(steps=steps))).model
        out["linescan_fb"] = {"before": fb_error(base, clip, prompt, vmask), "after": fb_error(tuned, clip, prompt, vmask)}
    return out


ABLATIONS = {"all on": set(), "none": {"warm", "mem", "gate"}, "warm start only": {"mem", "gate"},
             "memory only": {"warm", "gate"}, "ROI gate only": {"warm", "mem"}, "all but warm start": {"warm"},
             "all but memory": {"mem"}, "all but ROI gate": {"gate"}}


def feedback_ablation(weights: str | None, seeds=(11, 12), size: int = 96, n_frames: int = 161,
                      window: int = 32) -> dict:
    """Per-window in-vessel EPE with SAM2Flow's feedback paths cut at test time (RESULTS.md table).

    A path is cut by clearing it in the memory bank before every pair: ``warm`` the previous flow,
    ``mem`` the motion/context entries, ``gate`` the previous ROI probability.
    """
    import torch

    from napari_sam2med.flow.estimators.sam2flow import SAM2FlowEstimator, load_flow_model
    from napari_sam2med.flow.synthetic import SyntheticConfig, make_video, prompts_for

    torch.set_num_threads(1)
    model = load_flow_model(weights)
    curves: dict[str, list] = {name: [] for name in ABLATIONS}
    for seed in seeds:
        video = make_video(SyntheticConfig(height=size, width=size, n_frames=n_frames, seed=seed))
        mask = video.vessel_ids > 0
        for name, off in ABLATIONS.items():
            est = SAM2FlowEstimator(model)
            est.reset(video.frames[0], prompts_for(video))
            errs = []
            for t in range(n_frames - 1):
                if "warm" in off:
                    est.bank.last_flow = None
                if "mem" in off:
                    est.bank.motion.clear()
                    est.bank.context.clear()
                if "gate" in off:
                    est.bank.roi_prob = None
                step = est.step(video.frames[t + 1])
                errs.append(float(np.linalg.norm(step.flow - video.flow[t], axis=-1)[mask].mean()))
            curves[name].append(errs)
    out = {}
    for name, runs in curves.items():
        e = np.mean(runs, axis=0)
        out[name] = [float(e[a : a + window].mean()) for a in range(0, len(e), window)]
    return out
