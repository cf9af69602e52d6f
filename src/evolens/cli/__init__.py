"""The ``evolens`` command line. Each command lives in its own module and registers itself on ``app``.

User errors (``EvolensError``) end in one line on stderr and the error's exit code, never a traceback.
"""

from __future__ import annotations

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
def _root() -> None:
    """How knowledge evolves, layer by layer, inside vision-language models while they generate text."""


COMMAND_MODULES = (
    "demo",
    "models",
    "trace",
    "analyze",
    "compare",
    "skip",
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
    """Console entry point: returns the exit code (0 done, 1 some inputs failed, 2 usage error).

    Commands end with ``raise typer.Exit(code)`` to report partial failure; click prints usage errors
    itself and exits 2.
    """
    _register_commands()
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
    return 0
