"""The package layout and the cross-cutting pieces every layer shares: one JSON writer, one capture site,
the top-level API, unexpected errors, and the dependency declaration."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest
import tomllib

import evolens
from evolens.io.atomic import json_line, json_text, write_json, write_jsonl

SOURCE = Path(evolens.__file__).parent
ROOT = SOURCE.parent.parent


def test_the_package_root_holds_packages_only() -> None:
    modules = sorted(path.name for path in SOURCE.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "errors.py"]


def test_trace_is_a_function_and_the_engine_a_package() -> None:
    """Defect: ``evolens.trace`` was both a module and a function, so ``import evolens.trace`` broke it."""
    assert importlib.util.find_spec("evolens.trace") is None
    assert callable(evolens.trace) and evolens.trace.__module__ == "evolens.tracing.tracer"
    from evolens.tracing import Tracer, TraceSpec

    assert Tracer.__module__ == "evolens.tracing.tracer" and TraceSpec().lens == "normed"


def test_only_the_capture_module_hooks_decoder_layers() -> None:
    hooking = sorted(
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if re.search(r"register_forward(_pre)?_hook", path.read_text(encoding="utf-8"))
    )
    assert hooking == ["models/capture.py"]


def test_no_private_torch_api_in_the_engine() -> None:
    """Defect: the step engine called ``torch._log_softmax`` (and wrote comparisons into a float buffer)."""
    for path in [*(SOURCE / "tracing").glob("*.py"), *(SOURCE / "lenses").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        private = [
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "torch"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ]
        assert not private, f"{path.name} uses private torch API: {private}"


def test_one_json_writer_nan_is_null_and_line_separators_are_escaped(tmp_path: Path) -> None:
    import numpy as np

    value = {
        "x": float("nan"),
        "y": np.float32(0.5),
        "z": np.arange(2),
        "inf": float("-inf"),
        "t": "a\u2028b",
    }
    text = json_text(value)
    assert "NaN" not in text and "Infinity" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": None, "y": 0.5, "z": [0, 1], "inf": None, "t": "a\u2028b"}
    rows = [{"prompt": "Describe.\u2028Be brief."}, {"prompt": "Two\u2029paragraphs"}]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    lines = path.read_text(encoding="utf-8").splitlines()  # str.splitlines breaks on U+2028 if unescaped
    assert [json.loads(line) for line in lines] == rows
    assert json_line(rows[0]).endswith("\n") and json_line(rows[0]).count("\n") == 1
    written = write_json(tmp_path / "a.json", value)
    assert json.loads(written.read_text(encoding="utf-8"))["x"] is None


def test_no_other_module_writes_json_itself() -> None:
    writers = sorted(
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if "json.dump" in path.read_text(encoding="utf-8")
    )
    assert writers == ["io/atomic.py"]


def test_an_unexpected_error_is_one_line_naming_the_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect: anything not an EvolensError reached the user as a traceback."""
    from evolens import cli
    from evolens.pipeline import analyze as analyze_module

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("recorder lost its rows\nsecond line")

    monkeypatch.setenv("EVOLENS_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(analyze_module, "analyze", broken)
    (tmp_path / "trace").mkdir()
    (tmp_path / "trace" / "meta.json").write_text("{}")
    code = cli.main(["analyze", str(tmp_path / "trace"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == cli.INTERNAL_ERROR == 3
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("evolens: internal error: RuntimeError: recorder lost its rows")
    logs = list((tmp_path / "logs").glob("evolens-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    logged = logs[0].read_text(encoding="utf-8")
    assert "Traceback" in logged and "recorder lost its rows" in logged and "evolens analyze" in logged


def test_transformers_is_declared_as_a_tested_range() -> None:
    """Defect: a library pinned ``transformers==5.23.0``; it declares the range it is tested with and the
    exact version used by ``make`` lives in constraints.txt."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    spec = next(d for d in project["dependencies"] if d.startswith("transformers"))
    assert "==" not in spec and ">=" in spec and "<" in spec.replace("<=", ""), spec
    pinned = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert re.search(r"^transformers==\d+\.\d+\.\d+$", pinned, re.MULTILINE)
