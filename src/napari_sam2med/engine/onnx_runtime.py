"""Runtimes that execute an exported ONNX file on the CPU: ONNX Runtime and (optionally) OpenVINO.

Both get the same file and run it in float32 (OpenVINO is told so explicitly: on CPUs with bf16
units its default precision would be lower). A runner is ``runner.run(feed) -> list of arrays``
in the graph's output order.

A run made inside :func:`.preempt.preemptible` stops with :class:`.preempt.Preempted` when its token
is requested (ONNX Runtime: ``RunOptions.terminate``; OpenVINO: ``InferRequest.cancel``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .preempt import Preempted, current_token

__all__ = ["RUNTIMES", "open_runner", "runtime_available", "OrtRunner", "OpenVinoRunner"]

#: Runtime names (the engine names of :mod:`.encoders`) and the module each needs.
RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}


def runtime_available(runtime: str) -> bool:
    """Whether the Python package of ``runtime`` can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec(RUNTIMES[runtime]) is not None
    except (ValueError, ImportError):  # a None entry in sys.modules (tests) reads as missing
        return False


class OrtRunner:
    """An ONNX Runtime CPU session (all graph optimisations, ``threads`` intra-op threads)."""

    def __init__(self, path: str | Path, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self._run_options = ort.RunOptions

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph on named float32 inputs (stopped by the thread's preempt token, if any)."""
        token = current_token()
        if token is None:
            return self.session.run(None, feed)
        options = self._run_options()
        with token.on_request(lambda: setattr(options, "terminate", True)):
            token.check()
            try:
                return self.session.run(None, feed, options)
            except Exception as err:  # onnxruntime's own Fail type: "Exiting due to terminate flag ..."
                if token.requested:
                    raise Preempted("ONNX Runtime run terminated") from err
                raise


class OpenVinoRunner:
    """An OpenVINO CPU model compiled for latency, float32 inference, ``threads`` threads."""

    def __init__(self, path: str | Path, threads: int):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": max(1, int(threads)), "INFERENCE_PRECISION_HINT": "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self._outputs = list(self.compiled.outputs)
        self._lock = threading.Lock()  # one infer request: runs from several threads take turns

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph on named float32 inputs (results copied out of the request's buffers).

        Under a preempt token the request runs asynchronously and a stop request cancels it.
        """
        token = current_token()
        with self._lock:
            if token is None:
                res = self.request.infer(feed)
            else:
                token.check()
                with token.on_request(self.request.cancel):
                    self.request.start_async(feed)
                    if token.requested:  # requested between the check and the start: cancel the run now
                        self.request.cancel()
                    try:
                        self.request.wait()
                    except RuntimeError as err:  # "Infer Request was canceled"
                        if token.requested:
                            raise Preempted("OpenVINO request cancelled") from err
                        raise
                res = self.request.results
            return [np.array(res[o], copy=True) for o in self._outputs]


def open_runner(path: str | Path, threads: int, runtime: str = "onnx"):
    """Load ``path`` into the runner of ``runtime`` (``"onnx"`` or ``"openvino"``)."""
    if runtime == "onnx":
        return OrtRunner(path, threads)
    if runtime == "openvino":
        return OpenVinoRunner(path, threads)
    raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
