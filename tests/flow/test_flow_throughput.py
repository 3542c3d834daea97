"""The GPU throughput benchmark (benchmarks/flow_benchmark.py --throughput) runs and counts pairs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "flow_benchmark.py"


def test_pair_throughput_on_cpu_small():
    spec = importlib.util.spec_from_file_location("flow_benchmark", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.pair_throughput(64, 2, "cpu")
    assert r["pairs"] == 2 and r["dtype"] == "fp32" and r["device"].startswith("CPU")
    assert r["on_device"] > 0 and r["end_to_end"] > 0
