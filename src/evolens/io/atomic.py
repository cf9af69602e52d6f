"""Writes that are whole or absent: a file or folder that exists under its final name is finished.

Every writer first fills a temporary name in the same folder (same filesystem), flushes it to disk and
renames it over the final name; ``os.replace`` is atomic on POSIX. A process killed mid-write leaves only
a temporary (``.tmp-*``) that no reader looks at and the next run sweeps away.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from evolens.errors import StorageError

TEMP_PREFIX = ".tmp-"
BACKUP_MARK = ".old."
"""Marks the backup a ``staged_directory`` moves the old folder into: ``.tmp-<name>.old.<random>``."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
        try:
            os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes it private; a result file is not
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def json_ready(value: Any) -> Any:
    """Plain JSON values, recursively: numpy scalars and arrays to Python, paths to strings, tuples to
    lists, NaN and infinities to None (JSON has no NaN; ``null`` means "no value")."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy arrays and scalars
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any, indent: int | None = 2, sort_keys: bool = True) -> str:
    """``value`` as JSON text, the one encoding evolens writes: NaN as null, keys sorted, UTF-8 kept, and
    U+2028/U+2029 escaped (valid JSON that line-splitting readers and HTML would break on)."""
    text = json.dumps(
        json_ready(value), indent=indent, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False
    )
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def json_line(value: Any) -> str:
    """One JSONL line (compact, newline-terminated)."""
    return json_text(value, indent=None) + "\n"


def write_json(path: Path, value: Any) -> Path:
    """Write ``value`` as indented, key-sorted JSON atomically (the same value gives the same bytes)."""
    return write_text(path, json_text(value) + "\n")


def write_jsonl(path: Path, values: Iterable[Any]) -> Path:
    """Write one JSON line per value atomically."""
    return write_text(path, "".join(json_line(value) for value in values))


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; on success it replaces ``final`` whole.

    On an exception the temporary folder is removed and ``final`` is left as it was. Replacing an existing
    ``final`` takes two renames (a folder cannot be renamed over a non-empty one): the old folder into a
    backup ``.tmp-<name>.old.*/<name>``, then the new one into place. A kill between the two leaves no
    ``final`` but the old folder whole in its backup, which ``sweep_temporaries`` (the next run's first
    step) puts back; so at every instant the old or the new folder is complete under a name a run finds.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}.", dir=final.parent))
        staging.chmod(0o777 & ~_umask())
    except OSError as exc:
        raise StorageError(f"cannot create a folder beside {final}: {exc.strerror or exc}") from exc
    try:
        yield staging
        if final.exists():
            _swap_in(staging, final)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, final: Path) -> None:
    """Replace the folder ``final`` by ``staging`` through a backup of the old one (``staged_directory``)."""
    backup = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}{BACKUP_MARK}", dir=final.parent))
    os.replace(final, backup / final.name)
    try:
        os.replace(staging, final)
    except BaseException:
        os.replace(backup / final.name, final)
        shutil.rmtree(backup, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove the ``.tmp-*`` leftovers of killed writers directly in ``folder``; returns what was removed.

    A folder that a ``staged_directory`` killed between its two renames left only in its backup is put
    back first, so the sweep never removes the last complete copy of a result.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    _restore_backups(folder)
    removed = []
    for leftover in folder.glob(f"{TEMP_PREFIX}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
        removed.append(leftover)
    return removed


def _restore_backups(folder: Path) -> None:
    """Move each folder that only a ``staged_directory`` backup in ``folder`` holds back to its name."""
    for backup in folder.glob(f"{TEMP_PREFIX}*{BACKUP_MARK}*"):
        for kept in list(backup.iterdir()) if backup.is_dir() else []:
            final = folder / kept.name
            if not backup.name.startswith(f"{TEMP_PREFIX}{kept.name}{BACKUP_MARK}") or final.exists():
                continue  # not a backup of this name, or the new folder is in place: the sweep removes it
            try:
                os.replace(kept, final)
            except OSError as exc:
                raise StorageError(f"cannot put {final} back from {backup}: {exc.strerror or exc}") from exc
