"""``evolens analyze TRACE_DIR``: stages, per-layer statistics and the study's figures, from a trace alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from evolens.cli import app
from evolens.errors import UsageError
from evolens.vocabulary import HEATMAP, format_layers

METRICS = {"jsd": "jsd_next", **{name: name for name in HEATMAP}}
"""--metric values -> the heatmap metric (``evolens.vocabulary.HEATMAP``); "jsd" is short for jsd_next."""


def parse_steps(text: str | None) -> tuple[int, int] | None:
    """ "5-40" -> (5, 40); "7" -> (7, 7); None -> None: one range of generated steps."""
    if not text:
        return None
    from evolens.tracing.spec import parse_indices

    steps = parse_indices(text, "--steps")
    if len(steps) != steps[-1] - steps[0] + 1:
        raise UsageError(f"--steps must be one range FIRST-LAST, e.g. 0-40 (got '{text}')")
    return steps[0], steps[-1]


def parse_answer(text: str | None) -> int | list[str] | str:
    """ "3" -> step 3; "red,green,blue" -> those words; None or "auto" -> "auto" (first content word)."""
    if text is None or text.strip() == "auto":
        return "auto"
    if text.strip().isdigit():
        return int(text)
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise UsageError("--answer takes a step index or comma-separated words")
    return words


def stage_config(detector: Path | None, **overrides: float | str | None):
    """The detector's parameters: defaults, then the YAML/JSON file, then the command-line values."""
    from evolens.analysis.stages import StageConfig

    values: dict = {}
    if detector is not None:
        try:
            loaded = yaml.safe_load(detector.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"--detector {detector}: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--detector {detector}: expected a mapping of parameter: value")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return StageConfig.from_dict(values)


@app.command("analyze")
def analyze_command(
    trace_dir: Annotated[Path, typer.Argument(help="A trace directory written by `evolens trace`.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: TRACE_DIR/analysis).")
    ] = None,
    sample: Annotated[
        list[str] | None, typer.Option("--sample", "-s", help="Sample for single-token figures; repeat.")
    ] = None,
    steps: Annotated[
        str | None, typer.Option(help="Steps FIRST-LAST for the heatmap and lens grid (default: all).")
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Heatmap: jsd (standard) or paper_js (the paper's figure).")
    ] = "jsd",
    normalization: Annotated[
        str, typer.Option(help="Heatmap colours: none (comparable) or per-layer.")
    ] = "none",
    token: Annotated[
        list[str] | None, typer.Option("--token", "-t", help="Token (step or text) to chart; repeat.")
    ] = None,
    answer: Annotated[
        str | None, typer.Option(help="Images map: answer step, words 'red,green,blue', or auto.")
    ] = None,
    projection: Annotated[list[str] | None, typer.Option(help="tsne and/or pca (default both).")] = None,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="--no-figures: summary.json only.")
    ] = True,
    features: Annotated[
        bool, typer.Option("--features/--no-features", help="Feature maps (needs hidden states).")
    ] = True,
    rows_per_page: Annotated[int, typer.Option(min=1, help="Heatmap rows per page.")] = 40,
    steps_per_page: Annotated[int, typer.Option(min=1, help="Lens-grid columns per page.")] = 20,
    n_boot: Annotated[int, typer.Option(min=10, help="Bootstrap replicates.")] = 1000,
    max_answer_images: Annotated[
        int, typer.Option(min=1, help="At most this many images per prompt in the many-images map.")
    ] = 24,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of t-SNE.")] = 0,
    detector: Annotated[
        Path | None, typer.Option(help="YAML/JSON file of stage-detector parameters.")
    ] = None,
    jsd_threshold: Annotated[
        float | None, typer.Option(help="Stable when JSD < this x scale (default 0.2).")
    ] = None,
    jsd_scale: Annotated[str | None, typer.Option(help="JSD threshold scale: max (default) or ln2.")] = None,
    prob_rise_fraction: Annotated[
        float | None, typer.Option(help="Probability criterion level (0.5).")
    ] = None,
    null: Annotated[
        list[Path] | None,
        typer.Option(
            "--null", help="The trace's tokens scored under a null (evolens score --from TRACE); repeat."
        ),
    ] = None,
) -> None:
    """Write figures (PNG + SVG) and summary.json for a trace; no model is loaded."""
    from evolens.pipeline.analyze import AnalyzeOptions, analyze

    if metric not in METRICS:
        raise UsageError(f"--metric must be one of jsd, paper_js; got '{metric}'")
    if normalization not in ("none", "per-layer"):
        raise UsageError(f"--normalization must be none or per-layer; got '{normalization}'")
    projections = tuple(projection or ("tsne", "pca"))
    if set(projections) - {"tsne", "pca"}:
        raise UsageError(f"--projection must be tsne or pca; got {', '.join(projections)}")
    options = AnalyzeOptions(
        samples=list(sample) if sample else None,
        steps=parse_steps(steps),
        metric=METRICS[metric],
        normalization=normalization,
        tokens=list(token or []),
        rows_per_page=rows_per_page,
        steps_per_page=steps_per_page,
        answer=parse_answer(answer),
        projections=projections,
        figures=figures,
        features=features,
        n_boot=n_boot,
        max_answer_images=max_answer_images,
        seed=seed,
        stage_config=stage_config(
            detector, jsd_threshold=jsd_threshold, jsd_scale=jsd_scale, prob_rise_fraction=prob_rise_fraction
        ),
    )
    result = analyze(trace_dir, out, options, nulls=list(null or []))
    summary = result.summary
    typer.echo(f"stages found against the nulls ({summary['n_layers']} layers, all tokens):")
    for line in summary["stage_search"]["verdicts"]:
        typer.echo(f"  {line}")
    typer.echo(
        f"threshold rule (legacy): critical layer {summary['critical_layer']} "
        f"(probability criterion: {summary['critical_layer_prob']}), "
        f"mutation layer {summary['mutation_layer']}"
    )
    for condition, entry in ((summary.get("image_effect") or {}).get("conditions") or {}).items():
        apart = entry["metrics"]["log_prob"]["layers_apart_from_0"]
        typer.echo(
            f"  image effect (real - {condition}) on log p: band away from 0 at "
            + (f"layers {format_layers(apart)}" if apart else "no layer")
        )
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"{len(result.figures)} figure files and summary.json in {result.out_dir}")
