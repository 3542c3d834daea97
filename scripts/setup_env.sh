#!/usr/bin/env bash
# Create .venv with CPU torch, the package (editable, with napari + test extras) and the
# official sam2 oracle used only by the parity tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Install the CPU torch wheel first so that no CUDA build is resolved later (torch>=2.5 stays loose).
.venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.5" --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install -q -e ".[testing]"
# The oracle (official SAM2 1.1.0) for parity tests only, without its CUDA extension or dependencies.
SAM2_BUILD_CUDA=0 .venv/bin/python -m pip install -q --no-deps --no-build-isolation \
  sam2==1.1.0 hydra-core iopath omegaconf "antlr4-python3-runtime==4.9.3" portalocker
