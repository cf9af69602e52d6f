"""The run config: YAML + flags, validated, errors that name the key; and the atomic writers."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import yaml

from evolens.errors import UsageError
from evolens.io import atomic
from evolens.pipeline.config import RunConfig, load_config, parse_answer


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_yaml_with_flag_overrides_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "pics").mkdir()
    config_file = write_yaml(
        tmp_path / "cfg" / "run.yaml",
        "model: demo\nout: results/x\ndata:\n  path: pics\n  prompts: [Describe.]\n  limit: 4\n"
        "trace: {max_new_tokens: 32}\n",
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(config_file, {"data.limit": 2, "trace.lens": "raw", "data.seed": None})
    assert config.data.path == tmp_path / "cfg" / "pics", "data paths are relative to the config file"
    assert config.out == tmp_path / "results" / "x", "out is relative to where the command runs"
    assert config.data.source == "folder" and config.data.limit == 2 and config.data.seed == 0
    assert config.trace.max_new_tokens == 32 and config.trace.lens == "raw" and config.trace.top_k == 5
    # the saved (resolved) config reads back as the same config
    again = RunConfig.model_validate(yaml.safe_load(config.to_yaml()))
    assert again == config and again.fingerprint("data", "trace") == config.fingerprint("data", "trace")
    assert config.fingerprint("data") != load_config(config_file, {"data.limit": 3}).fingerprint("data")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: {source: shapes, limt: 3}\n", r"data\.limt: unknown key \(did you mean 'limit'\?\)"),
        (
            "data: {source: shapes}\ntrace: {max_new_tokens: -1}\n",
            r"trace\.max_new_tokens: .*greater than 0.*-1",
        ),
        (
            "data: {source: shapes}\ntrace: {lens: fancy}\n",
            r"trace\.lens: unknown lens 'fancy'; use one of: normed, raw, tuned",
        ),
        ("data: {source: coco, path: x}\n", r"data: source 'coco' needs data\.annotations"),
        ("data: {source: folder, path: x}\n", r"data: source 'folder' needs at least one prompt"),
        ("data: {source: shapes, prompts: ['  ']}\n", r"data\.prompts: a prompt is empty"),
        ("modle: demo\ndata: {source: shapes}\n", r"modle: unknown key \(did you mean 'model'\?\)"),
        ("data: [1, 2\n", r"not valid YAML"),
        ("- 1\n", r"must be a mapping"),
    ],
)
def test_config_errors_name_the_key_and_why(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        load_config(write_yaml(tmp_path / "c.yaml", text))
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


def test_atomic_write_leaves_old_content_when_killed_mid_write(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "report.html"
    atomic.write_text(target, "finished v1")

    def die(*args: object) -> None:
        raise KeyboardInterrupt  # stands for a kill between write and rename

    monkeypatch.setattr(os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_text(target, "half of v2")
    monkeypatch.undo()
    assert target.read_text() == "finished v1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(atomic.TEMP_PREFIX)]


def test_staged_directory_is_all_or_nothing(tmp_path: Path) -> None:
    final = tmp_path / "analysis"
    with atomic.staged_directory(final) as staging:
        (staging / "summary.json").write_text("{}")
    assert (final / "summary.json").is_file()
    with pytest.raises(RuntimeError), atomic.staged_directory(final) as staging:
        (staging / "other.json").write_text("{}")
        raise RuntimeError("analysis failed")
    assert sorted(p.name for p in final.iterdir()) == ["summary.json"], "old result kept whole"
    with atomic.staged_directory(final) as staging:
        (staging / "new.json").write_text("{}")
    assert sorted(p.name for p in final.iterdir()) == ["new.json"], "replaced whole"
    leftover = tmp_path / f"{atomic.TEMP_PREFIX}x.123"
    leftover.mkdir()
    assert atomic.sweep_temporaries(tmp_path) == [leftover] and not leftover.exists()


def replace_that_dies_after(moves: int, error: type[BaseException]):
    """``os.replace`` that does ``moves`` renames, then raises ``error`` on every later call (a kill: nothing
    after it runs, not even a handler's own rename)."""
    real_replace = os.replace
    done = []

    def replace(source: object, target: object) -> None:
        if len(done) >= moves:
            raise error("killed")
        done.append(target)
        real_replace(source, target)  # type: ignore[arg-type]

    return replace


def staged_twice(final: Path, monkeypatch: pytest.MonkeyPatch, replace) -> None:
    """A finished ``final`` holding old.json, then a second staging of new.json that ``replace`` cuts."""
    with atomic.staged_directory(final) as staging:
        (staging / "old.json").write_text("{}")
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(BaseException, match="killed"), atomic.staged_directory(final) as staging:
        (staging / "new.json").write_text("{}")
    monkeypatch.undo()


def test_staged_directory_killed_between_its_renames_is_recovered_by_the_next_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "analysis"
    staged_twice(final, monkeypatch, replace_that_dies_after(1, KeyboardInterrupt))
    assert not final.exists()  # the old folder is moved aside, the new one not yet in place
    atomic.sweep_temporaries(tmp_path)  # what the next run does first
    assert sorted(p.name for p in final.iterdir()) == ["old.json"], "the old result is back, whole"
    assert [p.name for p in tmp_path.iterdir()] == ["analysis"]


def test_staged_directory_puts_the_old_folder_back_when_its_second_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "analysis"
    real_replace = os.replace
    calls = []

    def second_fails(source: object, target: object) -> None:
        calls.append(target)
        if len(calls) == 2:
            raise OSError(errno.EIO, "killed")
        real_replace(source, target)  # type: ignore[arg-type]

    staged_twice(final, monkeypatch, second_fails)
    assert sorted(p.name for p in final.iterdir()) == ["old.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["analysis"]


def test_a_sweep_after_a_completed_swap_keeps_the_new_folder(tmp_path: Path, monkeypatch) -> None:
    """Killed after both renames, before the old copy was removed: the new folder stays, the old goes."""
    final = tmp_path / "analysis"
    monkeypatch.setattr(atomic.shutil, "rmtree", lambda *args, **kwargs: None)
    with atomic.staged_directory(final) as staging:
        (staging / "old.json").write_text("{}")
    with atomic.staged_directory(final) as staging:
        (staging / "new.json").write_text("{}")
    monkeypatch.undo()
    atomic.sweep_temporaries(tmp_path)
    assert sorted(p.name for p in final.iterdir()) == ["new.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["analysis"]


@pytest.mark.parametrize(
    ("text", "expected"), [("3", 3), ("red,green", ["red", "green"]), (" red , blue ", ["red", "blue"])]
)
def test_answer_flag_reaches_the_analyze_config(tmp_path: Path, text: str, expected: int | list[str]) -> None:
    config_file = write_yaml(tmp_path / "run.yaml", "model: demo\ndata: {source: shapes}\n")
    config = load_config(config_file, {"analyze.answer": parse_answer(text)})
    assert config.analyze.answer == expected


def test_empty_answer_flag_is_an_error() -> None:
    with pytest.raises(UsageError, match="answer words"):
        parse_answer(" , ")
