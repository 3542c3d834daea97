"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_ranks_match_one_process(npz_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run([str(WORKER), str(npz_dir), str(one)], tmp_path)
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), str(npz_dir), str(two)],
         tmp_path)
    r0 = torch.load(two / "rank0.pt", weights_only=True)
    r1 = torch.load(two / "rank1.pt", weights_only=True)
    single = torch.load(one / "rank0.pt", weights_only=True)
    start = torch.load(two / "last.pt", weights_only=True)["model"]
    moved = 0.0
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks differ at {k}"
        torch.testing.assert_close(r0[k], single[k], rtol=1e-4, atol=2e-5, msg=k)
        torch.testing.assert_close(start[k], r0[k])  # rank 0 wrote its own weights
        moved = max(moved, (single[k].float() - r0[k].float()).abs().max().item())
    assert (two / "run_card.json").is_file() and not (two / "rank0.pt").samefile(two / "rank1.pt")
