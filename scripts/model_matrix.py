"""Run every model family's tests and write the status matrix.

    .venv/bin/python scripts/model_matrix.py                  # all families, this machine's devices
    .venv/bin/python scripts/model_matrix.py --family llava   # re-run some, keep the others' entries
    .venv/bin/python scripts/model_matrix.py --junit report.xml  # summarise a pytest --junitxml report

Writes ``src/evolens/assets/model_status.json`` (read by ``evolens models``) and ``docs/model-status.md``
(the table for the README). A family's tests are ``tests/models/test_family_<family>.py`` unless listed in
``FAMILY_TESTS``; each test is parametrised by device ("cpu-fp32", "cuda-bf16" when CUDA is present).
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import transformers  # noqa: E402

from evolens.models.registry import all_adapters  # noqa: E402
from evolens.models.status import DEVICE_LABELS, DEVICES, STATUS_PATH, load_status  # noqa: E402

MARKDOWN_PATH = ROOT / "docs" / "model-status.md"
FAMILY_TESTS = {"demo": "tests/test_demo_*.py"}  # families tested outside tests/models/
Outcome = str  # "passed" | "failed" | "skipped"
ABOUT = """
Each family's test builds a tiny random model from its config and a locally assembled processor, loads it
through `evolens.load_model` and runs `evolens.verify.verify_model` (the lens at the last layer equals
the logits, greedy top-1 is the emitted token, skipping nothing equals plain generation, ...), plus family
specifics (image tokens, a left-padded batch of two images equals the rows run alone). Regenerate with
`.venv/bin/python scripts/model_matrix.py`; check a real model on your machine with
`evolens verify --model NAME_OR_PATH [--device cuda --dtype bf16]`.
"""


def family_test_files(family: str) -> list[Path]:
    """The test files of one family (empty when it has none)."""
    pattern = FAMILY_TESTS.get(family, f"tests/models/test_family_{family}.py")
    return sorted(ROOT.glob(pattern))


def run_pytest(files: list[Path], report: Path) -> None:
    """Run pytest on ``files`` writing a JUnit XML report; test failures are data, not an error here."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    subprocess.run([*command, *map(str, files)], cwd=ROOT, check=False)


def read_junit(report: Path) -> list[tuple[str, str, Outcome, str]]:
    """(test file stem, device, outcome, skip reason) for every test case of a JUnit XML report."""
    rows = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        dotted = case.get("classname", "").split(".")  # package.module or package.module.TestClass
        module = next((part for part in reversed(dotted) if part.startswith("test_")), dotted[-1])
        params = case.get("name", "").partition("[")[2].rstrip("]").split("-")
        device = next((d for d in DEVICES if d in "-".join(params)), DEVICES[0])
        outcome, reason = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and outcome == "passed":
                outcome, reason = "skipped", child.get("message", "")
        rows.append((module, device, outcome, reason))
    return rows


def summarise(counts: Counter[Outcome]) -> str:
    """One device's status: failed if any test failed, passed if any passed, else skipped (or not run)."""
    if counts["failed"]:
        return "failed"
    if counts["passed"]:
        return "passed"
    return "skipped" if counts["skipped"] else "not run"


def family_entries(rows: list[tuple[str, str, Outcome, str]]) -> dict[str, dict[str, Any]]:
    """Family -> its classes, test files, per-device status, counts and skip reasons."""
    entries: dict[str, dict[str, Any]] = {}
    for adapter in all_adapters():
        files = family_test_files(adapter.family)
        stems = {f.stem for f in files}
        mine = [row for row in rows if row[0] in stems]
        if not mine:
            continue
        counts = {d: Counter(outcome for _, device, outcome, _ in mine if device == d) for d in DEVICES}
        reasons = {d: sorted({r for _, dev, o, r in mine if dev == d and o == "skipped"}) for d in DEVICES}
        entries[adapter.family] = {
            "classes": list(adapter.hf_classes),
            "test_files": [str(f.relative_to(ROOT)) for f in files],
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


def write_markdown(status: dict[str, Any], path: Path) -> None:
    """The matrix as a markdown table, with the versions it was checked on."""
    env = status.get("environment", {})
    icon = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭ skipped", "not run": "–"}
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
        "| family | Hugging Face classes | " + " | ".join(DEVICE_LABELS[d] for d in DEVICES) + " |",
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
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", action="append", help="only these families (repeat); others are kept")
    parser.add_argument("--junit", type=Path, help="read this JUnit XML report instead of running pytest")
    args = parser.parse_args(argv)

    families = args.family or [a.family for a in all_adapters()]
    if args.junit is None:
        files = [f for family in families for f in family_test_files(family)]
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / "report.xml"
            run_pytest(files, report)
            rows = read_junit(report)
    else:
        rows = read_junit(args.junit)

    status = load_status()
    fresh = family_entries(rows)
    merged = {**status.get("families", {}), **fresh}
    status = {"environment": environment(), "families": dict(sorted(merged.items()))}
    STATUS_PATH.parent.mkdir(parents=True, exist_ok=True)
    STATUS_PATH.write_text(json.dumps(status, indent=2) + "\n")
    write_markdown(status, MARKDOWN_PATH)
    for family, entry in fresh.items():
        print(f"{family:18} " + "  ".join(f"{d}: {entry['status'][d]}" for d in DEVICES))
    print(f"wrote {STATUS_PATH.relative_to(ROOT)} and {MARKDOWN_PATH.relative_to(ROOT)}")
    failed = [f for f, e in fresh.items() if "failed" in e["status"].values()]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
