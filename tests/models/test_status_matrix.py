"""The status matrix: every family has tests and a status entry; the JUnit summary and ``evolens models``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from evolens.cli import main
from evolens.models.registry import all_adapters
from evolens.models.status import DEVICES, STATUS_PATH, family_status, load_status

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_matrix():
    """``scripts/model_matrix.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location("model_matrix", ROOT / "scripts" / "model_matrix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", [adapter.family for adapter in all_adapters()])
def test_every_family_has_a_test_file(model_matrix, family: str) -> None:
    assert model_matrix.family_test_files(family), f"family '{family}' has no test file"


@pytest.mark.parametrize("adapter", all_adapters(), ids=lambda adapter: adapter.family)
def test_every_family_has_a_status_entry(adapter) -> None:
    entry = load_status()["families"].get(adapter.family)
    assert entry is not None, f"no '{adapter.family}' in {STATUS_PATH.name}; run scripts/model_matrix.py"
    assert entry["classes"] == list(adapter.hf_classes)
    assert set(entry["status"]) == set(DEVICES)


def test_status_file_names_its_versions() -> None:
    environment = load_status()["environment"]
    assert environment["transformers"] and environment["torch"] and environment["date"]


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.models.test_family_llava" name="test_a[cpu-fp32]" />
<testcase classname="tests.models.test_family_llava" name="test_b[cpu-fp32]" />
<testcase classname="tests.models.test_family_llava" name="test_a[cuda-bf16]">
  <skipped type="pytest.skip" message="needs a CUDA device" /></testcase>
<testcase classname="tests.models.test_family_idefics3" name="test_a[cpu-fp32-SmolVLM]" />
<testcase classname="tests.models.test_family_idefics3" name="test_b[cpu-fp32-Idefics3]">
  <failure message="assert False" /></testcase>
<testcase classname="tests.models.test_family_idefics3" name="test_a[cuda-bf16-SmolVLM]">
  <error message="CUDA out of memory" /></testcase>
</testsuite></testsuites>"""


def test_junit_report_is_summarised_per_family_and_device(model_matrix, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(JUNIT)
    entries = model_matrix.family_entries(model_matrix.read_junit(report))
    assert set(entries) == {"llava", "idefics3"}
    assert entries["llava"]["status"] == {"cpu-fp32": "passed", "cuda-bf16": "skipped"}
    assert entries["llava"]["tests"]["cpu-fp32"] == {"passed": 2}
    assert entries["llava"]["skip_reasons"] == {"cuda-bf16": ["needs a CUDA device"]}
    assert entries["idefics3"]["status"] == {"cpu-fp32": "failed", "cuda-bf16": "failed"}
    assert entries["idefics3"]["tests"]["cpu-fp32"] == {"passed": 1, "failed": 1}


def test_markdown_table_has_one_row_per_family(model_matrix, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(JUNIT)
    status = {"environment": model_matrix.environment()}
    status["families"] = model_matrix.family_entries(model_matrix.read_junit(report))
    markdown = tmp_path / "status.md"
    model_matrix.write_markdown(status, markdown)
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| family |") and len(rows) == 3
    assert "| llava | `LlavaForConditionalGeneration` | ✅ passed (2/2) | ⏭ skipped (0/1) |" in rows
    assert f"transformers {status['environment']['transformers']}" in markdown.read_text()


def test_models_command_shows_each_family_and_its_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    status = load_status()
    for adapter in all_adapters():
        assert adapter.family in out
    llava_cpu = family_status(status, "llava")["cpu-fp32"]
    llava_row = next(line for line in out.splitlines() if "│ llava " in line)
    assert llava_cpu in llava_row
