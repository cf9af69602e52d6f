"""The status matrix: every family has tests and a status entry; the JUnit summary per family (read from
the test ids), the markdown tables and ``evolens models``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from evolens.cli import main
from evolens.models.registry import all_adapters
from evolens.models.status import DEVICES, STATUS_PATH, family_status, load_status
from tests.models.builders import TINY_FAMILIES, TinyFamily

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_matrix():
    """``scripts/model_matrix.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location("model_matrix", ROOT / "scripts" / "model_matrix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", [adapter.family for adapter in all_adapters()])
def test_every_family_has_tests(model_matrix, family: str) -> None:
    in_table = family in {row.family for row in TINY_FAMILIES}
    assert in_table or model_matrix.family_test_files(family), (
        f"family '{family}' has no row in tests/models/builders and no test files of its own"
    )


@pytest.mark.parametrize("row", TINY_FAMILIES, ids=lambda row: row.id)
def test_every_table_row_is_counted_for_its_family(model_matrix, row: TinyFamily) -> None:
    families = [adapter.family for adapter in all_adapters()]
    for name in (f"test_x[{row.id}-cpu-fp32]", f"test_x[{row.id}-cuda-bf16-lens_equals_logits]"):
        assert model_matrix.family_of("tests/models/test_conformance.py", name, families) == row.family


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
<testcase classname="tests.models.test_conformance" name="test_a[llava-cpu-fp32]" />
<testcase classname="tests.models.test_family_llava" name="test_b[llava-cpu-fp32]" />
<testcase classname="tests.models.test_conformance" name="test_a[llava-cuda-bf16]">
  <skipped type="pytest.skip" message="needs a CUDA device" /></testcase>
<testcase classname="tests.models.test_conformance" name="test_a[llava_next-cpu-fp32]" />
<testcase classname="tests.models.test_conformance" name="test_a[idefics3/smolvlm-cpu-fp32]" />
<testcase classname="tests.models.test_conformance" name="test_c[idefics3/idefics3-cpu-fp32-lens]">
  <failure message="assert False" /></testcase>
<testcase classname="tests.models.test_family_idefics3" name="test_d[idefics3/smolvlm-cuda-bf16]">
  <error message="CUDA out of memory" /></testcase>
<testcase classname="tests.test_demo_model" name="test_e" />
<testcase classname="tests.models.test_cli_verify" name="test_f" />
</testsuite></testsuites>"""


@pytest.fixture
def junit_rows(model_matrix, tmp_path: Path) -> list[tuple]:
    report = tmp_path / "report.xml"
    report.write_text(JUNIT)
    return model_matrix.read_junit(report)


def test_junit_report_is_summarised_per_family_and_device(model_matrix, junit_rows: list[tuple]) -> None:
    entries = model_matrix.family_entries(junit_rows)
    assert set(entries) == {"llava", "llava_next", "idefics3", "demo"}
    assert entries["llava"]["status"] == {"cpu-fp32": "passed", "cuda-bf16": "skipped"}
    assert entries["llava"]["tests"]["cpu-fp32"] == {"passed": 2}
    assert entries["llava"]["skip_reasons"] == {"cuda-bf16": ["needs a CUDA device"]}
    assert entries["llava"]["test_files"] == [
        "tests/models/test_conformance.py",
        "tests/models/test_family_llava.py",
    ]
    assert entries["llava_next"]["tests"] == {"cpu-fp32": {"passed": 1}, "cuda-bf16": {}}
    assert entries["idefics3"]["status"] == {"cpu-fp32": "failed", "cuda-bf16": "failed"}
    assert entries["idefics3"]["tests"]["cpu-fp32"] == {"passed": 1, "failed": 1}
    assert entries["demo"]["status"] == {"cpu-fp32": "passed", "cuda-bf16": "not run"}
    assert entries["demo"]["test_files"] == ["tests/test_demo_model.py"]


def test_a_test_that_names_no_family_is_kept_apart(junit_rows: list[tuple]) -> None:
    unassigned = [row for row in junit_rows if row[0] is None]
    assert [row[1] for row in unassigned] == ["tests/models/test_cli_verify.py"]


def test_family_selection_keeps_only_that_familys_node_ids(model_matrix) -> None:
    node_ids = [
        "tests/models/test_conformance.py::test_a[llava-cpu-fp32]",
        "tests/models/test_conformance.py::test_a[llava_next-cpu-fp32]",
        "tests/models/test_family_qwen_vl.py::test_b[qwen2_vl-cpu-fp32-test_image]",
        "tests/models/test_family_qwen_vl.py::test_b[qwen3_vl-cpu-fp32-test_image]",
        "tests/test_demo_model.py::test_c",
    ]
    assert model_matrix.select(node_ids, ["llava", "qwen3_vl"]) == [node_ids[0], node_ids[3]]
    assert model_matrix.select(node_ids, ["demo"]) == [node_ids[4]]


def matrix_status(model_matrix, junit_rows: list[tuple]) -> dict:
    return {"environment": model_matrix.environment(), "families": model_matrix.family_entries(junit_rows)}


def test_markdown_table_has_one_row_per_family(model_matrix, junit_rows: list[tuple], tmp_path: Path) -> None:
    status = matrix_status(model_matrix, junit_rows)
    markdown = tmp_path / "status.md"
    model_matrix.write_markdown(status, markdown)
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| family |") and len(rows) == 5
    assert "| llava | `LlavaForConditionalGeneration` | ✅ passed (2/2) | ⏭ skipped (0/1) |" in rows
    assert f"transformers {status['environment']['transformers']}" in markdown.read_text()


def test_readme_table_is_replaced_and_the_rest_kept(
    model_matrix, junit_rows: list[tuple], tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\nBefore.\n\n| family | Hugging Face classes | old |\n|---|---|\n| x | y |\n\nAfter.\n"
    )
    assert model_matrix.replace_table(matrix_status(model_matrix, junit_rows), readme)
    lines = readme.read_text().splitlines()
    assert lines[:4] == ["# Title", "", "Before.", ""] and lines[-2:] == ["", "After."]
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 4 and "| x | y |" not in table
    no_table = tmp_path / "other.md"
    no_table.write_text("no table here\n")
    assert not model_matrix.replace_table(matrix_status(model_matrix, junit_rows), no_table)
    assert no_table.read_text() == "no table here\n"


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
