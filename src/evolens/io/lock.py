"""One writer per trace folder: ``TraceLock``, an exclusive ``flock`` on ``DIR/.lock``.

Two processes writing one trace would number their parts alike and, worse, each one's finalize pass
(``evolens.io.repair``) would delete the other's temporaries and steps parts still waiting for their
samples part. So a writer locks the folder for as long as it writes, without waiting: a second writer, in
this process or another, is refused at once with a ``UsageError`` that names the holder (its pid, host and
command line, which the holder writes into the lock file).

The lock is the kernel's (``fcntl.flock`` on a file opened anew for each lock, so two locks conflict within
one process too), released when its file is closed or its process dies: a lock file that a killed process
left behind blocks nobody. The file is never removed: a process that opened the old file and one that
created a new one could then both hold "the" lock. Where there is no ``fcntl`` (Windows) nothing is locked,
and where the filesystem cannot lock a warning says so and the writer goes on unlocked, as before locks.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import warnings
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from evolens.errors import StorageError, UsageError
from evolens.io.atomic import json_line

if sys.platform != "win32":
    import fcntl

LOCK_NAME = ".lock"
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}
"""What ``flock`` answers on a filesystem that cannot lock (some network filesystems)."""
COMMAND_CHARACTERS = 300
"""The holder's command line is cut to this many characters in the lock file."""


class TraceLock:
    """The held lock of one trace folder (see the module docstring); ``release`` or a ``with`` block ends it.

    Attributes:
        directory: the trace folder it locks.
    """

    def __init__(self, directory: Path, handle: BinaryIO | None) -> None:
        self.directory = directory
        self._handle = handle
        self._held = True

    @classmethod
    def acquire(cls, directory: str | Path) -> TraceLock:
        """Lock ``directory`` (which must exist) for writing, or raise ``UsageError`` naming who holds it."""
        directory = Path(directory)
        if sys.platform == "win32":
            return cls(directory, None)
        path = directory / LOCK_NAME
        try:
            # "a+b": created if missing, never truncated before it is ours (a holder's line stays readable)
            handle = open(path, "a+b")  # noqa: SIM115 - held open for as long as the lock is held
        except OSError as exc:
            raise StorageError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UsageError(
                f"{directory} is being written by another process ({_holder(path)}); "
                "wait until it ends, or choose another --out"
            ) from None
        except OSError as exc:
            handle.close()
            if exc.errno not in NO_LOCKS:
                raise StorageError(f"cannot lock {path}: {exc.strerror or exc}") from exc
            warnings.warn(
                f"{directory}: the filesystem cannot lock files ({exc.strerror or exc}); "
                "make sure no other process writes this trace meanwhile",
                stacklevel=2,
            )
            return cls(directory, None)
        _write_holder(handle)
        return cls(directory, handle)

    @property
    def held(self) -> bool:
        """Whether this lock is still held (False after ``release``)."""
        return self._held

    def release(self) -> None:
        """Let go of the lock (again: nothing). The holder line is cleared first, so that it never names a
        process that no longer holds the lock."""
        self._held = False
        if self._handle is None or self._handle.closed:
            return
        with contextlib.suppress(OSError):
            self._handle.truncate(0)
        self._handle.close()  # closing the only descriptor of the lock file releases the flock

    def __enter__(self) -> TraceLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def _write_holder(handle: BinaryIO) -> None:
    """Write who holds the lock into the (locked) lock file, for the message a refused writer shows."""
    command = " ".join(" ".join(sys.orig_argv).split())[:COMMAND_CHARACTERS]  # one line
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
    with contextlib.suppress(OSError):  # the lock holds without it; only the refusal message is poorer
        handle.truncate(0)
        handle.write(json_line(holder).encode("utf-8"))
        handle.flush()


def _holder(path: Path) -> str:
    """The holder as its lock file names it: "pid 12 on host: command", or why it cannot be told."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {int(holder['pid'])} on {holder['host']}: {holder['command']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "which one is not recorded yet"
