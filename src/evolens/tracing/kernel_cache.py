"""Where numba keeps the compiled metric kernels: a private folder of this user, checked before use.

numba reads its cache folder (``NUMBA_CACHE_DIR``) when it is imported, and loads compiled code from it.
``numba_cache_ready`` therefore runs before the first ``import numba`` of the process: it prepares
``cache_root()/numba`` with ``evolens.io.private.private_folder`` (mode 0700, owner and modes checked,
a tampered folder of ours emptied) and points numba at it. Where that folder is refused (another user's,
or below a folder others can write), or numba was imported earlier with another cache folder, the kernels
are compiled in memory for this process only, with a warning: nothing is loaded from a folder we do not
control. numba writes each cache file under a temporary name and renames it (whole or absent).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

from evolens.io.private import UnsafeFolderError, cache_root, private_folder

CACHE_SUBFOLDER = "numba"


@functools.cache
def numba_cache_ready() -> bool:
    """Point numba's cache at this user's private folder; True if compiled kernels may be cached there."""
    try:
        folder = private_folder(cache_root() / CACHE_SUBFOLDER)
    except UnsafeFolderError as exc:
        warnings.warn(f"{exc}; the metric kernels are compiled for this run only", stacklevel=2)
        return False
    if "numba" not in sys.modules:
        os.environ["NUMBA_CACHE_DIR"] = str(folder)
    import numba

    in_use = getattr(numba.config, "CACHE_DIR", "")
    if in_use != str(folder):
        warnings.warn(
            f"numba was imported with another cache folder ({in_use or 'none'}); "
            "the metric kernels are compiled for this run only",
            stacklevel=2,
        )
        return False
    return True
