"""UI responsiveness of the segmentation widget while a propagation runs.

A QTimer ticks every 20 ms on the main thread while the widget propagates in
its worker; the largest gap between ticks says how long the UI froze. Also
measured: click latency (``segment_slice`` with a cached embedding, CPU) and
the click-to-labels latency through the widget's worker.

Run (headless): ``xvfb-run -a .venv/bin/python benchmarks/ui_responsiveness.py``
Prints a markdown table.
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
    parser.add_argument("--model", default="sam2.1-test")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--shape", type=int, nargs=3, default=(24, 128, 128))
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", action="store_true",
                        help="load the cached official weights instead of random ones")
    args = parser.parse_args(argv)

    import napari
    import torch
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_sam2med._qt.segment_widget import SegmentWidget
    from napari_sam2med._sample_data import synthetic_volume
    from napari_sam2med.sam2 import load_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model, image_size=args.image_size, random_init=not args.weights,
                       device="cpu", progress=False)
    image, _ = synthetic_volume(tuple(args.shape))
    viewer = napari.Viewer(show=False)
    viewer.add_image(image, name="vol", contrast_limits=(-160, 240))
    widget = SegmentWidget(viewer)
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


if __name__ == "__main__":
    main()
