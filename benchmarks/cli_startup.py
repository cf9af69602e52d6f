"""How fast the command line answers: `evolens --help`, `evolens models`, `import evolens`.

Each command runs in a fresh interpreter, ``--repeats`` times, interleaved with the same commands on an
earlier revision (``--baseline REV``, checked out into a temporary git worktree and put first on
PYTHONPATH), so both are measured under the same machine load. Prints a table of median wall and CPU
seconds and, last, one JSON line with the settings, the load and the ratios.

    python benchmarks/cli_startup.py --baseline 09bc6d6 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = "import sys; from evolens.cli import main; sys.exit(main(sys.argv[1:]))"  # as the console script does
CASES = {
    "evolens --help": ["-c", CLI, "--help"],
    "evolens models": ["-c", CLI, "models"],
    "import evolens": ["-c", "import evolens"],
}


def timed(args: list[str], source: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run of ``python args`` with ``source`` first."""
    env = {**os.environ, "PYTHONPATH": str(source), "COLUMNS": "120"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision to compare with (e.g. the commit before a change)")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    sources = {"now": ROOT / "src"}
    with tempfile.TemporaryDirectory() as scratch:
        if options.baseline:
            tree = Path(scratch) / "baseline"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), options.baseline],
                check=True,
                capture_output=True,
            )
            sources["baseline"] = tree / "src"
        try:
            load_before = os.getloadavg()
            runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for args in CASES.values():  # warm the file cache once per case and source
                for source in sources.values():
                    timed(args, source)
            for _ in range(options.repeats):
                for name, args in CASES.items():
                    for label, source in sources.items():
                        runs.setdefault((name, label), []).append(timed(args, source))
            load_after = os.getloadavg()
        finally:
            if options.baseline:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )
    medians = {
        f"{name} [{label}]": {
            "wall_s": round(statistics.median(w for w, _ in values), 3),
            "cpu_s": round(statistics.median(c for _, c in values), 3),
        }
        for (name, label), values in runs.items()
    }
    print(f"{'command':<34} {'wall s':>8} {'cpu s':>8}")
    for key, value in medians.items():
        print(f"{key:<34} {value['wall_s']:>8.3f} {value['cpu_s']:>8.3f}")
    ratios = {}
    if options.baseline:
        for name in CASES:
            now, before = medians[f"{name} [now]"], medians[f"{name} [baseline]"]
            ratios[f"{name}: baseline/now wall"] = round(before["wall_s"] / now["wall_s"], 2)
    record = {
        "benchmark": "cli_startup",
        "settings": {"repeats": options.repeats, "baseline": options.baseline, "cpus": os.cpu_count()},
        "load_average": {"before": load_before, "after": load_after},
        "medians": medians,
        "ratios": ratios,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
