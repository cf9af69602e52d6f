#!/usr/bin/env bash
# The one prepared GPU check (scripts/gpu_check.py): CUDA model tests + GPU overhead benchmark -> one JSON.
#   bash scripts/gpu_check.sh [--out gpu-check.json] [--junit junit.xml]   # on a CUDA machine, < 8 minutes
#   bash scripts/gpu_check.sh --dry-run                                    # checks the script on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
exec timeout 480 "$PYTHON" scripts/gpu_check.py "$@"
