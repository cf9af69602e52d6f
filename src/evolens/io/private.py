"""evolens' cache folder, and folders that only this user can write (for anything that is loaded as code).

``cache_root`` is ``$EVOLENS_CACHE``, else ``$XDG_CACHE_HOME/evolens``, else ``~/.cache/evolens``; where the
user has no home (no ``$HOME`` and no passwd entry, as in some containers) it is ``evolens-<uid>`` in the
temporary directory.

``private_folder`` hands out a folder from which compiled code may be loaded: it is created with mode
0700, and before it is used it must be a real directory owned by this user with no access for group or
others, every folder above it owned by this user or root and writable by nobody else (unless sticky, as
``/tmp``), and everything inside it a regular file or folder owned by this user and writable by nobody
else. A folder that is ours but fails the rest (made world-writable, say) is emptied and made private:
nothing in it is trusted. A folder owned by someone else, or below a folder someone else can rename, is
refused (``UnsafeFolderError``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from evolens.errors import StorageError

CACHE_ENV = "EVOLENS_CACHE"


class UnsafeFolderError(StorageError):
    """A folder that another user could write into (so nothing loaded from it can be trusted)."""


def user_id() -> int:
    """This process's user id (0 where the platform has none)."""
    return os.getuid() if hasattr(os, "getuid") else 0


def home_folder() -> Path | None:
    """The user's home folder, or None where there is none (no $HOME and no passwd entry)."""
    try:
        return Path.home()
    except (RuntimeError, KeyError):
        return None


def cache_root() -> Path:
    """evolens' cache folder (see the module doc); nothing is created."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "evolens"
    home = home_folder()
    if home is not None:
        return home / ".cache" / "evolens"
    return Path(tempfile.gettempdir()) / f"evolens-{user_id()}"


def private_folder(folder: Path) -> Path:
    """``folder``, created if missing, checked private (see the module doc); raises UnsafeFolderError."""
    folder = Path(folder).absolute()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        _check_ancestors(folder)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafeFolderError(f"{folder} is not a folder")
        if info.st_uid != user_id():
            raise UnsafeFolderError(f"{folder} belongs to user {info.st_uid}, not to this user ({user_id()})")
        if stat.S_IMODE(info.st_mode) & 0o077 or _untrusted_entries(folder):
            _empty(folder)
    except OSError as exc:
        raise UnsafeFolderError(f"cannot prepare {folder}: {exc.strerror or exc}") from exc
    return folder


def fresh_private_folder(prefix: str = "evolens-") -> Path:
    """A new empty folder of this process in the temporary directory (mode 0700 by ``mkdtemp``)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def _check_ancestors(folder: Path) -> None:
    """Every folder above ``folder`` is owned by this user or root and writable by no one else, unless
    sticky (then others cannot rename or remove what is ours inside it)."""
    for parent in folder.parents:
        info = os.stat(parent)
        if info.st_uid not in (0, user_id()):
            raise UnsafeFolderError(f"{parent} (above {folder}) belongs to user {info.st_uid}")
        if stat.S_IMODE(info.st_mode) & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise UnsafeFolderError(f"{parent} (above {folder}) can be written by other users")


def _untrusted_entries(folder: Path) -> bool:
    """Whether anything inside ``folder`` is a link, not ours, or writable by group or others."""
    for root, folders, files in os.walk(folder):
        for name in (*folders, *files):
            info = os.lstat(os.path.join(root, name))
            regular = stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)
            if not regular or info.st_uid != user_id() or stat.S_IMODE(info.st_mode) & 0o022:
                return True
    return False


def _empty(folder: Path) -> None:
    """Make ``folder`` (ours) private, then remove everything inside it."""
    os.chmod(folder, 0o700)
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
