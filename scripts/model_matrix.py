"""Run every model family's tests and write the status matrix.

    .venv/bin/python scripts/model_matrix.py                  # all families, this machine's devices
    .venv/bin/python scripts/model_matrix.py --family llava   # re-run some, keep the others' entries
    .venv/bin/python scripts/model_matrix.py --junit report.xml  # summarise a pytest --junitxml report

Writes ``src/evolens/assets/model_status.json`` (read by ``evolens models``), ``docs/model-status.md`` and
the same table in README.md. The family tests are the conformance suite (``tests/models/test_conformance.py``)
and the family files (``tests/models/test_family_*.py``); their ids name the tiny model's row and the device
(``test_x[llava-cpu-fp32]``, ``test_x[causal_lm/qwen3-cuda-bf16]``), which is how each test is counted for its
family. Families tested outside that table list their files in ``FAMILY_TESTS``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Collection
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import transformers  # noqa: E402

from evolens.models.registry import all_adapters  # noqa: E402
from evolens.models.status import DEVICE_LABELS, DEVICES, STATUS_PATH, load_status  # noqa: E402

MARKDOWN_PATH = ROOT / "docs" / "model-status.md"
README_PATH = ROOT / "README.md"
TABLE_HEADER = "| family | Hugging Face classes |"
SHARED_TESTS = ("tests/models/test_conformance.py", "tests/models/test_family_*.py")  # ids name the family
FAMILY_TESTS = {"demo": "tests/test_demo_*.py"}  # families tested outside the tiny-model table, by file
Outcome = str  # "passed" | "failed" | "skipped"
Row = tuple[str | None, str, str, Outcome, str]  # family (None: no family's), test file, device, outcome, why
ABOUT = """
Each family's tiny random models (built from its config with a locally assembled processor and loaded
through `evolens.load_model`) run the conformance suite `tests/models/test_conformance.py`: the adapter
resolves the right modules, every `evolens.verify` check passes (the lens at the last layer equals the
logits, greedy top-1 is the emitted token, skipping nothing equals plain generation, ...), the image changes
the output, a left-padded batch equals the rows run alone, and a wrong final norm or a missing logit cap is
caught; plus family specifics in `tests/models/test_family_*.py` (image tokens, M-RoPE, DeepStack, ...).
Regenerate with `.venv/bin/python scripts/model_matrix.py`; check a real model on your machine with
`evolens verify --model NAME_OR_PATH [--device cuda --dtype bf16]`.
"""


def family_test_files(family: str) -> list[Path]:
    """The test files of a family tested outside the tiny-model table (``FAMILY_TESTS``), else []."""
    return sorted(ROOT.glob(FAMILY_TESTS[family])) if family in FAMILY_TESTS else []


def family_test_paths(families: Collection[str]) -> list[Path]:
    """The files holding the tests of ``families``: the shared ones, plus their own ``FAMILY_TESTS``."""
    shared = [path for pattern in SHARED_TESTS for path in sorted(ROOT.glob(pattern))]
    return shared + [path for family in families for path in family_test_files(family)]


def family_of(test_file: str, test_name: str, families: Collection[str]) -> str | None:
    """The family a test belongs to: the one its id names (``test_x[idefics3/smolvlm-cpu-fp32]``: the
    row "idefics3/smolvlm" of family "idefics3"), else the ``FAMILY_TESTS`` family of its file, else None."""
    for part in test_name.partition("[")[2].removesuffix("]").split("-"):
        family = part.partition("/")[0]
        if family in families:
            return family
    return next((family for family, pattern in FAMILY_TESTS.items() if fnmatch(test_file, pattern)), None)


def collect(paths: list[Path]) -> list[str]:
    """The pytest node ids in ``paths`` ("tests/models/test_conformance.py::test_x[llava-cpu-fp32]")."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run([*command, *map(str, paths)], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"model_matrix: collecting the tests failed:\n{done.stdout}{done.stderr}")
    return [line.strip() for line in done.stdout.splitlines() if "::" in line]


def select(node_ids: list[str], families: Collection[str]) -> list[str]:
    """The node ids of tests that belong to one of ``families``."""
    known = [adapter.family for adapter in all_adapters()]
    chosen = []
    for node_id in node_ids:
        test_file, _, test_name = node_id.partition("::")
        if family_of(test_file, test_name.rsplit("::", 1)[-1], known) in families:
            chosen.append(node_id)
    return chosen


def run_pytest(tests: list[str], report: Path) -> None:
    """Run pytest on ``tests`` (files or node ids) writing a JUnit XML report; failing tests are data here,
    a pytest run that ends without a report (killed, crashed) is an error."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    done = subprocess.run([*command, *tests], cwd=ROOT, check=False)
    if not report.is_file():
        raise SystemExit(f"model_matrix: pytest ended with exit code {done.returncode} and wrote no report")


def junit_test_file(classname: str) -> str:
    """A JUnit classname's test file: "tests.models.test_x" or "tests.models.test_x.TestClass" ->
    "tests/models/test_x.py"."""
    dotted = classname.split(".")
    last = max((i for i, part in enumerate(dotted) if part.startswith("test_")), default=len(dotted) - 1)
    return "/".join(dotted[: last + 1]) + ".py"


def read_junit(report: Path) -> list[Row]:
    """(family, test file, device, outcome, skip reason) for every test case of a JUnit XML report."""
    families = [adapter.family for adapter in all_adapters()]
    rows: list[Row] = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        test_file, name = junit_test_file(case.get("classname", "")), case.get("name", "")
        params = name.partition("[")[2].removesuffix("]")
        device = next((d for d in DEVICES if d in params), DEVICES[0])
        outcome, reason = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and outcome == "passed":
                outcome, reason = "skipped", child.get("message", "")
        rows.append((family_of(test_file, name, families), test_file, device, outcome, reason))
    return rows


def summarise(counts: Counter[Outcome]) -> str:
    """One device's status: failed if any test failed, passed if any passed, else skipped (or not run)."""
    if counts["failed"]:
        return "failed"
    if counts["passed"]:
        return "passed"
    return "skipped" if counts["skipped"] else "not run"


def family_entries(rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Family -> its classes, test files, per-device status, counts and skip reasons."""
    entries: dict[str, dict[str, Any]] = {}
    for adapter in all_adapters():
        mine = [row for row in rows if row[0] == adapter.family]
        if not mine:
            continue
        counts = {d: Counter(outcome for _, _, device, outcome, _ in mine if device == d) for d in DEVICES}
        reasons = {d: sorted({r for _, _, dev, o, r in mine if dev == d and o == "skipped"}) for d in DEVICES}
        entries[adapter.family] = {
            "classes": list(adapter.hf_classes),
            "test_files": sorted({test_file for _, test_file, _, _, _ in mine}),
            "status": {d: summarise(counts[d]) for d in DEVICES},
            "tests": {d: dict(counts[d]) for d in DEVICES},
            "skip_reasons": {d: reasons[d] for d in DEVICES if reasons[d]},
        }
    return entries


def environment() -> dict[str, Any]:
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": datetime.date.today().isoformat(),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_device": cuda,
    }


def markdown_table(status: dict[str, Any]) -> list[str]:
    """The matrix as markdown table lines: one row per family, one column per device."""
    icon = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭ skipped", "not run": "–"}
    lines = [
        TABLE_HEADER + " " + " | ".join(DEVICE_LABELS[d] for d in DEVICES) + " |",
        "|---|---|" + "---|" * len(DEVICES),
    ]
    for family, entry in sorted(status["families"].items()):
        classes = ", ".join(f"`{c}`" for c in entry["classes"])
        cells = []
        for device in DEVICES:
            counts = entry["tests"].get(device, {})
            total = sum(counts.values())
            shown = icon[entry["status"][device]]
            cells.append(f"{shown} ({counts.get('passed', 0)}/{total})" if total else shown)
        lines.append(f"| {family} | {classes} | " + " | ".join(cells) + " |")
    return lines


def write_markdown(status: dict[str, Any], path: Path) -> None:
    """The matrix as a markdown page, with the versions it was checked on."""
    env = status.get("environment", {})
    lines = [
        "# Model status",
        "",
        f"Checked on {env.get('date', '?')} with transformers {env.get('transformers', '?')}, "
        f"torch {env.get('torch', '?')}, Python {env.get('python', '?')}"
        + (f", GPU {env['cuda_device']}" if env.get("cuda_device") else " (no GPU: CUDA bf16 tests skipped)")
        + ".",
        "",
        *ABOUT.strip().splitlines(),
        "",
        *markdown_table(status),
    ]
    path.write_text("\n".join(lines) + "\n")


def replace_table(status: dict[str, Any], path: Path) -> bool:
    """Replace the matrix table in the markdown file ``path`` (README.md); False when it has none."""
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER)), None)
    if start is None:
        return False
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    path.write_text("\n".join([*lines[:start], *markdown_table(status), *lines[end:]]) + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", action="append", help="only these families (repeat); others are kept")
    parser.add_argument("--junit", type=Path, help="read this JUnit XML report instead of running pytest")
    args = parser.parse_args(argv)

    known = [adapter.family for adapter in all_adapters()]
    families = args.family or known
    unknown = sorted(set(families) - set(known))
    if unknown:
        parser.error(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}")
    if args.junit is None:
        paths = family_test_paths(families)
        tests = select(collect(paths), families) if args.family else [str(p) for p in paths]
        if not tests:
            parser.error(f"no tests found for {', '.join(families)}")
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / "report.xml"
            run_pytest(tests, report)
            rows = read_junit(report)
    else:
        rows = read_junit(args.junit)

    status = load_status()
    fresh = {family: entry for family, entry in family_entries(rows).items() if family in families}
    merged = {**status.get("families", {}), **fresh}
    status = {"environment": environment(), "families": dict(sorted(merged.items()))}
    STATUS_PATH.parent.mkdir(parents=True, exist_ok=True)
    STATUS_PATH.write_text(json.dumps(status, indent=2) + "\n")
    write_markdown(status, MARKDOWN_PATH)
    written = [STATUS_PATH, MARKDOWN_PATH] + ([README_PATH] if replace_table(status, README_PATH) else [])
    for family, entry in fresh.items():
        print(f"{family:18} " + "  ".join(f"{d}: {entry['status'][d]}" for d in DEVICES))
    orphans = sorted({test_file for family, test_file, *_ in rows if family is None})
    if orphans:
        print(f"not counted (their tests name no family): {', '.join(orphans)}", file=sys.stderr)
    print("wrote " + ", ".join(str(path.relative_to(ROOT)) for path in written))
    failed = [f for f, e in fresh.items() if "failed" in e["status"].values()]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
