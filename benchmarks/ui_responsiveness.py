"""UI responsiveness of the segmentation widget while a propagation runs.

A QTimer ticks every 20 ms on the main thread while the widget propagates in
its worker; the largest gap between ticks says how long the UI froze. Also
measured: click latency (``segment_slice`` with a cached embedding, CPU) and
the click-to-labels latency through the widget's worker.

Run (headless): ``xvfb-run -a .venv/bin/python benchmarks/ui_responsiveness.py``
Prints a markdown table.

``--precompute`` (issue 15) measures instead the background precompute of the dock at the
model's real size (default SAM2.1-tiny at 1024 px, random weights, CPU): click-to-mask on a slice
clicked at once (cold), after a dwell on it, on a not-yet-visited neighbour after a dwell, and the
peak memory (``--memory-check``: run it for two stack lengths, each in its own process).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _wait(app, condition, timeout=600.0):
    start = time.perf_counter()
    while not condition():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - start > timeout:
            raise TimeoutError("benchmark step did not finish")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default sam2.1-test (sam2.1-tiny with --precompute)")
    parser.add_argument("--image-size", type=int, default=None, help="default 128 (1024 with --precompute)")
    parser.add_argument("--shape", type=int, nargs=3, default=None,
                        help="default 24 128 128 (44 512 512 with --precompute)")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", action="store_true",
                        help="load the cached official weights instead of random ones")
    parser.add_argument("--precompute", action="store_true",
                        help="measure click-to-mask with the background precompute (defaults below apply)")
    parser.add_argument("--dwell", type=float, default=2.0, help="--precompute: seconds on a slice before a click")
    parser.add_argument("--budget-mb", type=float, default=200.0, help="--precompute: memory budget")
    parser.add_argument("--repeats", type=int, default=3, help="--precompute: repeats of each scenario")
    parser.add_argument("--no-preempt", action="store_true",
                        help="--precompute: a click lets the background encode in flight finish (the old behaviour)")
    parser.add_argument("--engine", default="torch",
                        help="--precompute: the model panel's engine (torch, onnx, openvino, auto); exported and "
                             "compiled in a warm-up before the timed scenarios")
    parser.add_argument("--memory-check", action="store_true",
                        help="--precompute: only dwell until the budget is full and report peak memory")
    args = parser.parse_args(argv)
    if args.precompute:
        return precompute_benchmark(args)
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer, widget, model = _open_dock(args, "sam2.1-test", 128, (24, 128, 128))
    widget.set_model(model, args.model)
    app = QApplication.instance()
    mid = args.shape[0] // 2
    viewer.dims.set_current_step(0, mid)

    # first click: computes the embedding in the worker
    t0 = time.perf_counter()
    widget.state.points_layer.add(np.array([[mid, args.shape[1] * 0.45, args.shape[2] * 0.36]]))
    _wait(app, lambda: not widget.is_busy())
    first_click = time.perf_counter() - t0

    # click latency with a cached embedding: the engine call itself
    session, rng = widget.state.session, np.random.default_rng(0)
    engine_ms = []
    for _ in range(args.clicks):
        point = rng.uniform(8, min(args.shape[1:]) - 8, size=(1, 2))
        session.add_points(1, mid, point, [1])
        t = time.perf_counter()
        session.segment_slice(mid, [1])
        engine_ms.append(1000 * (time.perf_counter() - t))
    session.clear_prompts(1, mid)
    widget.state.synced.clear()

    # ... and through the widget (layer event -> worker -> labels written)
    widget_ms = []
    for k in range(min(args.clicks, 10)):
        t = time.perf_counter()
        widget.state.points_layer.add(np.array([[mid, 20 + 3 * k, 20 + 2 * k]]))
        _wait(app, lambda: not widget.is_busy())
        widget_ms.append(1000 * (time.perf_counter() - t))

    # UI ticks while propagating
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    _wait(app, lambda: len(ticks) >= 5)
    t = time.perf_counter()
    worker = widget.propagate()
    assert worker is not None, widget.status.text()
    _wait(app, lambda: not widget.is_busy())
    prop_s = time.perf_counter() - t
    timer.stop()
    during = [b - a for a, b in zip(ticks, ticks[1:]) if b >= t]
    gaps_ms = [1000 * g for g in during] or [float("nan")]

    print(f"## UI responsiveness ({args.model} @ {args.image_size} px, CPU, {args.threads} thread(s), "
          f"stack {tuple(args.shape)})\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| first click (embedding + decode, via worker) | {1000 * first_click:.1f} ms |")
    print(f"| click latency, cached embedding (engine), median / max | "
          f"{statistics.median(engine_ms):.1f} / {max(engine_ms):.1f} ms |")
    print(f"| click to labels through the widget, median | {statistics.median(widget_ms):.1f} ms |")
    print(f"| propagation of {args.shape[0]} slices | {prop_s:.2f} s |")
    print(f"| UI timer (20 ms) max gap during propagation | {max(gaps_ms):.1f} ms |")
    print(f"| UI timer median gap during propagation | {statistics.median(gaps_ms):.1f} ms |")
    print(f"| ticks during propagation | {len(during)} |")
    widget.close()
    viewer.close()


def _open_dock(args, model_name, image_size, shape):
    """The model (``args`` defaults filled in), a hidden viewer with a synthetic volume, and a Segment dock."""
    import napari
    import torch

    from napari_sam2med._qt.segment_widget import SegmentWidget
    from napari_sam2med._sample_data import synthetic_volume
    from napari_sam2med.sam2 import load_model

    args.model = args.model or model_name
    args.image_size = args.image_size or image_size
    args.shape = args.shape or shape
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model, image_size=args.image_size, random_init=not args.weights,
                       device="cpu", progress=False)
    image, _ = synthetic_volume(tuple(args.shape))
    viewer = napari.Viewer(show=False)
    viewer.add_image(image, name="vol", contrast_limits=(-160, 240))
    return viewer, SegmentWidget(viewer), model


def print_click_table(first_column: str, rows: dict) -> None:
    """A markdown table of click timings: ``rows[name]`` = [(wall ms, CPU ms), ...]."""
    print(f"| {first_column} | wall median ms | wall min / max ms | click job CPU median ms | n |")
    print("|---|---|---|---|---|")
    for name, vals in rows.items():
        wall, cpu = [v[0] for v in vals], [v[1] for v in vals]
        print(f"| {name} | {statistics.median(wall):.0f} | {min(wall):.0f} / {max(wall):.0f} | "
              f"{statistics.median(cpu):.0f} | {len(vals)} |")


def _pump(app, seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def precompute_benchmark(args) -> None:
    """Click-to-mask with the dock's background precompute (issue 15); prints a markdown table."""
    import os

    from qtpy.QtWidgets import QApplication

    from napari_sam2med._qt import segment_jobs
    from napari_sam2med.engine.embedding_cache import attach_cache

    load_before = os.getloadavg()
    job_cpu: list[float] = []
    plain_job = segment_jobs._segment_job

    def timed_job(*a):  # CPU seconds of the click's own worker thread (what an idle core would take)
        c = time.thread_time()
        try:
            return plain_job(*a)
        finally:
            job_cpu.append(time.thread_time() - c)

    segment_jobs._segment_job = timed_job
    viewer, widget, model = _open_dock(args, "sam2.1-tiny", 1024, (44, 512, 512))
    panel = widget.precompute_panel
    panel.budget_spin.setValue(args.budget_mb)
    panel.enabled.setChecked(False)  # on where a scenario says so
    widget.set_model(model, args.model)
    app = QApplication.instance()
    n, h, w = args.shape
    base_mb = _peak_rss_mb()

    def settle():  # no job of the dock runs, the precompute included
        _wait(app, lambda: not widget.is_busy() and not panel.runner.busy)

    def go(z):
        viewer.dims.set_current_step(0, z)

    process_cpu: list[float] = []

    def click(z, k=0):
        t, c = time.perf_counter(), time.process_time()
        widget.state.points_layer.add(np.array([[z, h * 0.45 + 2 * k, w * 0.36 + 3 * k]]))
        _wait(app, lambda: not widget.is_busy())
        process_cpu.append(1000 * (time.process_time() - c))
        return 1000 * (time.perf_counter() - t), 1000 * job_cpu[-1]

    def cache():
        return widget.state.session.features

    if args.memory_check:  # dwell in the middle until the budget is full
        go(n // 2)
        widget.update_prompts()
        panel.enabled.setChecked(True)
        _wait(app, lambda: panel.last is not None and not panel.runner.busy)
        c = cache()
        peak = _peak_rss_mb()
        print(f"| {n} slices | {len(c)} cached, {c.nbytes / 2**20:.0f} MB (budget {args.budget_mb:g}) | "
              f"{base_mb:.0f} MB | {peak:.0f} MB | +{peak - base_mb:.0f} MB | {viewer.layers['vol'].data.nbytes * 3 / 2**20:.0f} MB |")
        widget.close()
        viewer.close()
        return

    rows: dict[str, list[tuple[float, float]]] = {}
    ready_s: list[float] = []
    decoder_process_cpu: list[float] = []

    def arrive(z):  # the user comes to slice z (the precompute of the previous site has stopped)
        panel.enabled.setChecked(False)
        settle()
        go(z)
        panel.enabled.setChecked(True)

    def row(name, value):
        rows.setdefault(name, []).append(value)

    widget.model_panel.engine_combo.setCurrentText(args.engine)
    widget.update_prompts()  # build the session (as the first dwell would)
    settle()
    attach_cache(widget.state.session, args.budget_mb).preempt = not args.no_preempt  # as the panel would
    cache().get(n - 1)  # warm-up: the engine's one-off export / compile is not a click's cost
    cache().clear()
    for r in range(args.repeats):
        z = 2 + 14 * r
        if z + 13 > n:
            raise SystemExit(f"--repeats {args.repeats} needs a stack of at least {z + 13} slices")
        arrive(z)  # cold: a slice nobody has encoded, clicked at once
        assert z not in cache()
        row("cold: click at once on a new slice", click(z, r))
        row("again on the same slice (decoder only)", click(z, r + 1))
        decoder_process_cpu.append(process_cpu[-1])  # no precompute runs during this click
        arrive(z + 2)  # dwell on a new slice, then click on it
        _pump(app, args.dwell)
        row(f"dwell {args.dwell:g} s on a slice, click on it", click(z + 2, r))
        arrive(z + 4)  # dwell, then step to the not-yet-visited neighbour and click at once
        _pump(app, args.dwell)
        go(z + 5)
        row(f"dwell {args.dwell:g} s, click on the next (unvisited) slice", click(z + 5, r))
        arrive(z + 8)  # how long a dwell makes the neighbour ready; the click then
        t = time.perf_counter()
        _wait(app, lambda z=z: z + 9 in cache())
        ready_s.append(time.perf_counter() - t)
        go(z + 9)
        row("dwell until the neighbour is ready, click on it", click(z + 9, r))
        # the same once the precompute has finished (a budget of 3 slices): no encode competes with the click
        panel.budget_spin.setValue(3 * cache().entry_bytes / 2**20 + 0.1)
        arrive(z + 11)
        _wait(app, lambda z=z: panel.last is not None and panel.last.center == z + 11 and not panel.runner.busy)
        go(z + 12)
        row("precompute finished (slice + 2 neighbours), click on a neighbour", click(z + 12, r))
        panel.budget_spin.setValue(args.budget_mb)
    panel.enabled.setChecked(False)
    settle()
    load = os.getloadavg()
    print(f"## Background precompute ({args.model} @ {args.image_size} px, engine {args.engine}, "
          f"{'official' if args.weights else 'random'} weights, {'no ' if args.no_preempt else ''}preemption, CPU, "
          f"{args.threads} thread(s), stack {tuple(args.shape)}, "
          f"budget {args.budget_mb:g} MB, load average before {load_before[0]:.1f}, after {load[0]:.1f}/{load[1]:.1f})\n")
    print_click_table("click-to-mask (through the dock)", rows)
    print(f"\nDwell until the neighbour was ready: median {statistics.median(ready_s):.1f} s "
          f"(min {min(ready_s):.1f}, max {max(ready_s):.1f}); encoder calls {cache().encoded}, "
          f"background encodes preempted by a click {cache().preempted}, "
          f"peak RSS {_peak_rss_mb():.0f} MB. Decoder-only click, CPU of the whole process (dock, worker and "
          f"this script's polling loop): median {statistics.median(decoder_process_cpu):.0f} ms.")
    widget.close()
    viewer.close()


if __name__ == "__main__":
    main()
