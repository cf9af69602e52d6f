"""The ``evolens`` command line. Each command lives in its own module and registers itself on ``app``.

User errors (``EvolensError``) end in one line on stderr and the error's exit code, never a traceback.
Anything else (a bug, an out-of-memory error) ends in one line too, naming the error and the file where the
full traceback was written, with exit code 3.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import traceback
from pathlib import Path

import typer

from evolens.errors import EvolensError

app = typer.Typer(
    name="evolens",
    help="How knowledge evolves, layer by layer, inside vision-language models while they generate text.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show transformers' own loading progress bars and warnings."
    ),
) -> None:
    """How knowledge evolves, layer by layer, inside vision-language models while they generate text."""
    if verbose:
        os.environ["EVOLENS_VERBOSE"] = "1"


COMMAND_MODULES = (
    "demo",
    "models",
    "trace",
    "score",
    "analyze",
    "compare",
    "skip",
    "causal",
    "hallucination",
    "run",
    "verify",
    "train_lens",
)


def _register_commands() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"evolens.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"evolens.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> int:
    """Console entry point: returns the exit code (0 done, 1 some inputs failed, 2 a user error, 3 a bug;
    see ``evolens.errors``).

    Commands end with ``raise typer.Exit(code)`` to report partial failure; click prints usage errors
    itself and exits 2.
    """
    _register_commands()
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = str(PIPED_WIDTH)  # rich would cut help and tables at 80 columns
    try:
        app(args=argv, prog_name="evolens")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except EvolensError as exc:
        typer.echo(f"evolens: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("evolens: interrupted; run the same command again to resume", err=True)
        return 130
    except Exception as exc:  # not the user's doing: one line here, the whole story in a log file
        log = _log_traceback(argv)
        where = f"; full traceback in {log}" if log is not None else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(f"evolens: internal error: {type(exc).__name__}: {first}{where}", err=True)
        return INTERNAL_ERROR
    return 0


PIPED_WIDTH = 200
"""Width of help text and tables written to a pipe or a file (a terminal's own width is used otherwise)."""

INTERNAL_ERROR = 3
"""Exit code of an unexpected error (a bug or a resource failure, not bad input)."""


def log_directory() -> Path:
    """Where tracebacks of unexpected errors go: $EVOLENS_LOG_DIR, else the ``logs`` folder of evolens'
    cache (``evolens.io.private.cache_root``: ~/.cache/evolens/logs, or a folder in the temporary
    directory where there is no home)."""
    configured = os.environ.get("EVOLENS_LOG_DIR")
    if configured:
        return Path(configured)
    from evolens.io.private import cache_root

    return cache_root() / "logs"


def _log_traceback(argv: list[str] | None) -> Path | None:
    """Write the current exception's traceback and the command line to a new log file; None if impossible."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        folder = log_directory()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"evolens-{stamp}-{os.getpid()}.log"
        command = " ".join(["evolens", *(sys.argv[1:] if argv is None else argv)])
        path.write_text(f"{command}\n\n{traceback.format_exc()}", encoding="utf-8")
    except OSError:
        return None
    return path
