"""``evolens models``: the supported families, the classes they cover, and their tested status."""

from __future__ import annotations

from importlib.metadata import version

from rich.console import Console
from rich.table import Table

from evolens.cli import app
from evolens.models.registry import all_adapters
from evolens.models.status import DEVICE_LABELS, DEVICES, family_status, load_status

STATUS_STYLE = {"passed": "green", "failed": "red", "skipped": "yellow"}


@app.command("models")
def models_command() -> None:
    """List the model families evolens has adapters for, and whether their tests pass."""
    status = load_status()
    checked_with = status.get("environment", {}).get("transformers")
    table = Table(
        title="evolens model families",
        caption=f"status: tiny random models, transformers {checked_with or '?'} (scripts/model_matrix.py)",
    )
    for column in ("family", "Hugging Face classes", "images", "inputs"):
        table.add_column(column)
    for device in DEVICES:
        table.add_column(DEVICE_LABELS[device])
    for adapter in all_adapters():
        classes = "built in: EfficientNet-Lite0 + MLP + SmolLM2-135M" if adapter.family == "demo" else None
        outcomes = family_status(status, adapter.family).values()
        cells = [f"[{STATUS_STYLE[o]}]{o}[/{STATUS_STYLE[o]}]" if o in STATUS_STYLE else o for o in outcomes]
        table.add_row(
            adapter.family,
            classes or ", ".join(adapter.hf_classes),
            "yes" if adapter.vision else "no",
            adapter.inputs,
            *cells,
        )
    console = Console()
    console.print(table)
    if checked_with and checked_with != version("transformers"):
        console.print(
            f"note: the status was checked with transformers {checked_with}; you have "
            f"{version('transformers')}. Check a model here with `evolens verify --model NAME`."
        )
