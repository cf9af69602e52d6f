"""``evolens models``: the supported families, the classes they cover, and their tested status."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from evolens.cli import app
from evolens.models.registry import all_adapters


@app.command("models")
def models_command() -> None:
    """List the model families evolens has adapters for."""
    table = Table(title="evolens model families")
    for column in ("family", "Hugging Face classes", "images", "inputs"):
        table.add_column(column)
    table.add_row(
        "demo", "built-in (EfficientNet-Lite0 + MLP projector + SmolLM2-135M)", "yes", "processor_chat"
    )
    for adapter in all_adapters():
        if adapter.family == "demo":
            continue
        table.add_row(
            adapter.family, ", ".join(adapter.hf_classes), "yes" if adapter.vision else "no", adapter.inputs
        )
    Console().print(table)
