"""``evolens demo``: caption the demo images and answer the colour question on them with the demo VLM.

By default the bundled set (a dozen held-out shapes-world scenes plus scikit-image's photos) is written to
``<out>/images`` first; ``--images`` takes a folder of your own instead. Images that cannot be read are
listed and skipped; the exit code is then 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from evolens.cli import app
from evolens.errors import InputError
from evolens.io.atomic import write_jsonl

COLOR_QUESTION = "What is the color of the shape?"


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for the demo images and the results.")] = Path(
        "results/demo"
    ),
    images: Annotated[
        Path | None, typer.Option(help="Folder of your own images (default: the bundled demo set).")
    ] = None,
    model: Annotated[str, typer.Option(help="Model to run ('demo' or a cached VLM).")] = "demo",
    max_new_tokens: Annotated[int, typer.Option(help="Longest caption, in tokens.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Images per generate() batch.")] = 6,
) -> None:
    """Caption the demo images ("Describe this image.") and answer the colour question on each."""
    from evolens.data.images import find_images
    from evolens.models import load_model
    from evolens.models.demo.images import materialize_demo_images, read_demo_manifest
    from evolens.models.loaded import SCOPE

    console = Console()
    if images is None:
        entries = read_demo_manifest(materialize_demo_images(out))
    else:
        if not images.is_dir():
            raise InputError(f"{images}: not a folder of images")
        entries = [{"id": p.stem, "image": str(p), "ground_truth": None} for p in find_images(images)]
        if not entries:
            raise InputError(f"{images}: no image files (.png, .jpg, ...) in this folder")
    pictures, failures = _load_all(entries)
    loaded = load_model(model)
    console.print(f"{model}: {len(pictures)} images, {loaded.n_layers} decoder layers")
    if loaded.info.get(SCOPE):
        console.print(f"note: {loaded.info[SCOPE]}", soft_wrap=True)
    results = []
    ready = [e for e in entries if e["id"] in pictures]
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        chunk_images = [pictures[e["id"]] for e in chunk]
        captions = _answer(loaded, ["Describe this image."] * len(chunk), chunk_images, max_new_tokens)
        colors = _answer(loaded, [COLOR_QUESTION] * len(chunk), chunk_images, 12)
        for entry, caption, color in zip(chunk, captions, colors, strict=True):
            results.append({**entry, "caption": caption, "color_answer": color})
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "demo-results.jsonl"
    write_jsonl(results_path, results)
    console.print(_table(results))
    console.print(f"results: {results_path.resolve()}", soft_wrap=True)
    if failures:
        console.print(f"[red]{len(failures)} image(s) could not be read:[/red]")
        for message in failures:
            console.print(f"  {message}", soft_wrap=True)
        raise typer.Exit(1)


def _load_all(entries: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    from evolens.data.images import load_image

    pictures, failures = {}, []
    for entry in entries:
        try:
            pictures[entry["id"]] = load_image(entry["image"])
        except InputError as exc:
            failures.append(str(exc))
    return pictures, failures


def _answer(loaded: Any, prompts: list[str], images: list[Any], max_new_tokens: int) -> list[str]:
    inputs = loaded.build_inputs(prompts, images)
    new_ids = loaded.generate(inputs, max_new_tokens=max_new_tokens)
    return [loaded.decode(row) for row in new_ids]


def _table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="evolens demo", show_lines=True)
    for column in ("image", "caption", "colour answer", "ground truth"):
        table.add_column(column, overflow="fold")
    for result in results:
        truth = result.get("ground_truth")
        names = ", ".join(f"{o['size']} {o['color']} {o['shape']}" for o in truth["objects"]) if truth else ""
        table.add_row(result["id"], result["caption"], result["color_answer"], names)
    return table
