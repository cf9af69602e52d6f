"""One prepared GPU check: the CUDA column of the model tests and the GPU overhead benchmark, one JSON.

On a machine with a CUDA GPU (``scripts/gpu_check.sh``, or ``python scripts/gpu_check.py``):

1. the model-family tests on CUDA bf16 (``pytest tests/models -k cuda``: every family's tiny model built
   from its config, the conformance suite and the family files), counted per family as
   ``scripts/model_matrix.py`` counts them;
2. ``benchmarks/gpu_overhead.py`` on the LLaVA-1.5-7B-size and Qwen2-VL-7B-size decoders (random bf16
   weights built from their configs), batch 1 and 32, 64 new tokens, 2 repeats;

each step under its own time limit (together under 8 minutes), and writes one JSON object with every
number (environment, test counts and failures per family, the benchmark's report, the seconds each step
took) to ``--out`` (default ``gpu-check.json``). To put the results in the README's model matrix
afterwards: ``python scripts/model_matrix.py --junit JUNIT`` with the JUnit file kept by ``--junit``.

``--dry-run`` checks the script itself on any machine, the CPU included: the tests are only collected,
and the benchmark runs on 2-layer versions of the configs on the CPU for 2 tokens.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from model_matrix import environment, family_entries, read_junit  # noqa: E402

TEST_SECONDS = 300
"""Time limit of the CUDA model tests."""
BENCHMARK_SECONDS = 170
"""Time limit of the benchmark (both models, both batch sizes)."""
BENCHMARK = [
    "--models",
    "llava-1.5-7b,qwen2-vl-7b",
    "--batch-sizes",
    "1,32",
    "--tokens",
    "64",
    "--repeats",
    "2",
]
DRY_BENCHMARK = [
    "--models",
    "llava-1.5-7b,qwen2-vl-7b",
    "--batch-sizes",
    "1,2",
    "--tokens",
    "2",
    "--repeats",
    "1",
]


def run_step(command: list[str], limit: float) -> dict[str, Any]:
    """Run ``command`` from the repository root with a time limit: its exit code, seconds and output tail."""
    began = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        output = (
            (exc.stdout or b"").decode(errors="replace")
            if isinstance(exc.stdout, bytes)
            else exc.stdout or ""
        )
    return {
        "command": command,
        "exit_code": code,
        "seconds": time.perf_counter() - began,
        "tail": output[-4000:],
    }


def model_tests(dry_run: bool, junit: Path) -> dict[str, Any]:
    """The CUDA column of the model tests (collected only with ``dry_run``), counted per family."""
    command = [sys.executable, "-m", "pytest", "tests/models", "-k", "cuda", "-q", "-p", "no:cacheprovider"]
    if dry_run:
        step = run_step([*command, "--collect-only"], TEST_SECONDS)
        step["collected"] = sum(1 for line in step["tail"].splitlines() if "::" in line)
        return step
    step = run_step([*command, f"--junitxml={junit}"], TEST_SECONDS)
    if junit.is_file():
        step["families"] = {
            family: {"status": entry["status"]["cuda-bf16"], "tests": entry["tests"]["cuda-bf16"]}
            for family, entry in family_entries(read_junit(junit)).items()
        }
    return step


def benchmark(dry_run: bool) -> dict[str, Any]:
    """``benchmarks/gpu_overhead.py`` at the README's settings (tiny on the CPU with ``dry_run``)."""
    settings = DRY_BENCHMARK if dry_run else BENCHMARK
    step = run_step([sys.executable, "benchmarks/gpu_overhead.py", *settings], BENCHMARK_SECONDS)
    last = next((line for line in reversed(step["tail"].splitlines()) if line.startswith("{")), None)
    step["report"] = json.loads(last) if last else None
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="check the script on any machine (CPU)")
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    parser.add_argument("--junit", type=Path, default=None, help="keep the tests' JUnit report here")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        junit = args.junit or Path(folder) / "junit.xml"
        tests = model_tests(args.dry_run, junit)
        bench = benchmark(args.dry_run)
    result = {
        "check": "gpu_check",
        "dry_run": args.dry_run,
        "environment": environment(),
        "model_tests": tests,
        "benchmark": bench,
        "seconds": time.perf_counter() - began,
        "limits_seconds": {"model_tests": TEST_SECONDS, "benchmark": BENCHMARK_SECONDS},
    }
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"gpu_check: {args.out} ({result['seconds']:.0f} s)")
    ok = tests["exit_code"] in (0, 5) and bench["exit_code"] == 0 and bench["report"] is not None
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
