"""Run ``evolens`` and SIGKILL it from inside at a chosen point: ``python kill_at.py POINT -- ARGS...``.

A kill point wraps one function so that a given call kills the process with SIGKILL (no cleanup, no
``finally``, exactly as ``kill -9``), wherever the function was imported.

- ``trace:N``: the N-th image load (``evolens.data.images.load_image``): N-1 images were traced.
- ``analysis:N``: the N-th figure the analysis saves (``matplotlib.figure.Figure.savefig``).
- ``report``: ``report.html`` is written in full to its temporary name, but not yet renamed.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def kill_on_call(owner: Any, name: str, when: Callable[..., bool]) -> None:
    """Replace ``owner.name`` with a wrapper that SIGKILLs the process when ``when(*args)`` is true, also
    where modules already imported it by name (``from evolens.data.images import load_image``)."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)
    for module in list(sys.modules.values()):
        if getattr(module, name, None) is original:
            setattr(module, name, wrapper)


def nth_call(n: int) -> Callable[..., bool]:
    calls = {"count": 0}

    def when(*args: Any, **kwargs: Any) -> bool:
        calls["count"] += 1
        return calls["count"] >= n

    return when


def install(point: str) -> None:
    name, _, count = point.partition(":")
    if name == "trace":
        import evolens.data.images

        kill_on_call(evolens.data.images, "load_image", nth_call(int(count)))
    elif name == "analysis":
        import matplotlib.figure

        kill_on_call(matplotlib.figure.Figure, "savefig", nth_call(int(count)))
    elif name == "report":
        kill_on_call(os, "replace", lambda src, dst, *a, **k: os.path.basename(str(dst)) == "report.html")
    else:
        raise SystemExit(f"unknown kill point {point}")


if __name__ == "__main__":
    separator = sys.argv.index("--")
    install(sys.argv[1])
    from evolens.cli import main

    sys.exit(main(sys.argv[separator + 1 :]))
