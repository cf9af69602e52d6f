"""``evolens score``: teacher-forced traces of given responses, in the trace format.

    evolens score --from runs/demo/trace --condition blank --out runs/demo/null-blank
    evolens score --model llava-hf/llava-1.5-7b-hf --responses answers.jsonl --out runs/answers

``--from TRACE`` scores a trace's own generations again (same samples, same tokens, the trace's model, lens
and settings unless given) under a condition: ``image`` reproduces the trace (a check), ``no-image``,
``blank`` and ``shuffled`` are its nulls (``evolens analyze TRACE --null DIR``). ``--responses`` scores the
lines of a JSONL file (image, prompt, response; e.g. answers saved by lmms-eval).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evolens.cli import app
from evolens.errors import UsageError

if TYPE_CHECKING:
    from evolens.data.resolve import Sample


@app.command("score")
def score_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output trace folder (resumes when it exists).")],
    source: Annotated[
        Path | None, typer.Option("--from", help="A trace whose generations to score again.")
    ] = None,
    responses: Annotated[
        Path | None,
        typer.Option(
            help="A JSONL file: one {image, prompt, response} per line (response: text or token ids)."
        ),
    ] = None,
    condition: Annotated[
        str, typer.Option(help="image, no-image, blank (mean colour, same size) or shuffled (another image).")
    ] = "image",
    model: Annotated[
        str | None, typer.Option(help="The model (default with --from: the trace's own).")
    ] = None,
    lens: Annotated[
        str | None, typer.Option(help="normed, raw, tuned or tuned:PATH (default with --from: the trace's).")
    ] = None,
    top_k: Annotated[
        int | None, typer.Option(help="Top tokens kept per layer (default 5, or the trace's).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 4,
    image_tokens: Annotated[
        bool,
        typer.Option(
            "--image-tokens/--no-image-tokens",
            help="Also read the lens at every image token and layer (the image_tokens/ table).",
        ),
    ] = False,
    probe_words: Annotated[
        str | None,
        typer.Option(help="With --image-tokens: words to follow, e.g. red,circle (default: scored ones)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many samples, in order.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps.")] = "cpu",
    dtype: Annotated[
        str | None, typer.Option(help="float32, bfloat16 or float16 (default: model's).")
    ] = None,
) -> None:
    """Score given responses layer by layer (teacher forcing, one forward pass per batch), under an input
    condition; writes the usual trace format."""
    from evolens.cli.trace import say_result
    from evolens.tracing.scoring import samples_from_trace
    from evolens.tracing.spec import TraceSpec
    from evolens.tracing.tracer import trace

    if (source is None) == (responses is None):
        raise UsageError("give exactly one of --from TRACE or --responses FILE.jsonl")
    settings: dict[str, object] = {"condition": condition, "batch_size": batch_size}
    inputs: list[Sample] | Path | None = responses
    if source is not None:
        samples, meta = samples_from_trace(source)
        inputs = samples[:limit] if limit is not None else samples
        model = model or str(meta["model"])
        settings.update(from_meta(meta))
    elif model is None:
        raise UsageError("--responses needs --model")
    settings.update({k: v for k, v in {"lens": lens, "top_k": top_k}.items() if v is not None})
    settings.update({"image_tokens": image_tokens, "probe_words": probe_words})
    spec = TraceSpec.of(**settings)
    result = trace(
        model, inputs, None, out=out, spec=spec, progress=True, device=device, dtype=dtype,
        limit=limit if source is None else None,
    )  # fmt: skip
    say_result(result, f"scored ({condition})")


def from_meta(meta: dict[str, object]) -> dict[str, object]:
    """The trace settings a scoring of a trace keeps (its meta.json): lens, top-k, paper JS, hidden states."""
    lens = str(meta.get("lens") or "normed")
    if lens == "tuned" and meta.get("lens_path"):
        lens = f"tuned:{meta['lens_path']}"
    hidden = meta.get("hidden")
    settings: dict[str, object] = {
        "lens": lens,
        "top_k": meta.get("top_k", 5),
        "paper_js": meta.get("paper_js"),
    }
    if isinstance(hidden, dict):
        steps, layers = hidden.get("steps"), hidden.get("layers")
        settings["keep_hidden"] = True
        settings["hidden_steps"] = "all" if steps is None else ",".join(str(s) for s in steps)
        settings["hidden_layers"] = "all" if layers is None else ",".join(str(layer) for layer in layers)
    return settings
