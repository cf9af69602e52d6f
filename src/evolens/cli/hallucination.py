"""``evolens hallucination``: hallucination metrics from benchmark files, the mutation-layer analysis of a
trace, and layer-mix (DeCo-style) decoding against the baseline.

    evolens hallucination chair --instances instances_val2014.json --captions generated.jsonl
    evolens hallucination amber --amber-dir AMBER/data --responses responses.json
    evolens hallucination pope --questions coco_pope_random.json --answers answers.jsonl
    evolens hallucination pope-build --annotations instances_val2014.json --out pope/
    evolens hallucination margins --questions pope/pope_adversarial.jsonl --images val2014/ --out runs/margins
    evolens hallucination trace --trace runs/trace --out runs/hallucination
    evolens hallucination words --trace runs/trace --out runs/words [--amber-dir AMBER/data]
    evolens hallucination decode --model demo --shapes 100 --layers 20 --alpha 0.5 --out runs/decode
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from evolens.cli import app
from evolens.io.atomic import write_json

Flag = typer.Option  # short alias so each option fits on one line

hallucination_app = typer.Typer(
    help="Hallucination metrics (CHAIR, AMBER, POPE), the mutation-layer analysis, layer-mix decoding.",
    no_args_is_help=True,
)
app.add_typer(hallucination_app, name="hallucination")


def _print_metrics(title: str, metrics: dict[str, Any], out: Path | None) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    if out is not None:
        write_json(out, metrics)
        typer.echo(f"wrote {out}")


@hallucination_app.command("chair")
def chair_command(
    instances: Annotated[Path, Flag("--instances", help="MSCOCO instances_*.json.")],
    captions: Annotated[Path, Flag("--captions", help="Generated captions: JSON list or JSON lines.")],
    coco_captions: Annotated[Path | None, Flag("--coco-captions", help="MSCOCO captions_*.json.")] = None,
    image_id_key: Annotated[str, Flag("--image-id-key")] = "image_id",
    caption_key: Annotated[str, Flag("--caption-key")] = "caption",
    out: Annotated[Path | None, Flag("--out", help="Write the metrics as JSON here.")] = None,
) -> None:
    """CHAIR_s, CHAIR_i and recall of generated captions against MSCOCO annotations."""
    from evolens.eval.chair import chair, load_coco_objects, load_generated_captions

    objects = load_coco_objects(instances, coco_captions)
    result = chair(load_generated_captions(captions, image_id_key, caption_key), objects)
    _print_metrics("CHAIR", result.to_dict(), out)


@hallucination_app.command("amber")
def amber_command(
    amber_dir: Annotated[Path, Flag("--amber-dir", help="AMBER's data folder (annotations.json, ...).")],
    responses: Annotated[Path, Flag("--responses", help='Responses: [{"id", "response"}].')],
    out: Annotated[Path | None, Flag("--out")] = None,
) -> None:
    """AMBER's generative CHAIR, Cover, Hal and Cog (fractions)."""
    from evolens.eval.amber import AmberData, amber_generative, load_amber_responses

    result = amber_generative(load_amber_responses(responses).items(), AmberData.load(amber_dir))
    _print_metrics("AMBER generative", result.to_dict(), out)


@hallucination_app.command("pope")
def pope_command(
    questions: Annotated[Path, Flag("--questions", help="POPE question file (JSON lines).")],
    answers: Annotated[Path, Flag("--answers", help='Answers: JSON lines {"question_id", "text"}.')],
    out: Annotated[Path | None, Flag("--out")] = None,
) -> None:
    """POPE accuracy, precision, recall, F1 and yes-ratio."""
    from evolens.eval.pope import pope_from_files

    _print_metrics("POPE", pope_from_files(questions, answers).to_dict(), out)


@hallucination_app.command("pope-build")
def pope_build_command(
    annotations: Annotated[Path, Flag("--annotations", help="COCO-format instances JSON.")],
    out: Annotated[Path, Flag("--out", help="Folder for pope_{random,popular,adversarial}.jsonl.")],
    per_image: Annotated[
        int, Flag("--per-image", help="Objects asked about per image (and as many absent).")
    ] = 3,
    seed: Annotated[
        int, Flag("--seed", help="Seeds which present (and random absent) objects are asked.")
    ] = 0,
) -> None:
    """POPE's question sets from instance annotations: random, popular and adversarial absent objects."""
    from evolens.errors import UsageError
    from evolens.eval.pope_build import build_pope, read_instances, write_pope

    if per_image < 1:
        raise UsageError(f"--per-image must be at least 1 (got {per_image})")
    sets = build_pope(read_instances(annotations), per_image, seed)
    for path in write_pope(sets, out):
        typer.echo(f"wrote {path} ({sum(1 for _ in path.open())} questions)")
    if sets.left_out:
        typer.echo(f"left out {len(sets.left_out)} images with fewer than {per_image} objects", err=True)


@hallucination_app.command("margins")
def margins_command(
    questions: Annotated[
        list[Path], Flag("--questions", help="POPE-format question files (repeat: splits).")
    ],
    images: Annotated[Path, Flag("--images", help="The folder holding the questions' image files.")],
    out: Annotated[Path, Flag("--out", help="Output folder (margins.json, the answer traces).")],
    model: Annotated[str, Flag("--model", help="demo, a cached hub id or a local path.")] = "demo",
    suffix: Annotated[str, Flag("--suffix", help="Added to each question, e.g. ' Answer yes or no.'")] = "",
    limit: Annotated[int | None, Flag("--limit", help="At most this many questions per file.")] = None,
    batch_size: Annotated[int, Flag("--batch-size")] = 8,
    n_boot: Annotated[int, Flag("--n-boot", help="Bootstrap replicates (over images).")] = 1000,
    device: Annotated[str, Flag("--device")] = "cpu",
    dtype: Annotated[str | None, Flag("--dtype")] = None,
) -> None:
    """Where the right answer loses: per layer, log p(correct) - log p(wrong) of the yes/no answer; for
    each wrong final answer, the last layer at which the correct one still led. One result per file."""
    from evolens.eval.answer_margin import margins, question_samples, score_answers
    from evolens.models import load_model

    loaded = load_model(model, device=device, dtype=dtype)
    results = {}
    for path in questions:
        split = path.stem.removeprefix("pope_")
        samples = question_samples(path, images, suffix, limit)
        folders = score_answers(loaded, samples, out / split, batch_size)
        results[split] = margins(folders["Yes"], folders["No"], n_boot)
        summary = results[split]
        typer.echo(
            f"{split}: {summary['n_questions']} questions, accuracy {summary['accuracy']:.3f}, "
            f"yes-rate {summary['yes_rate']:.3f} (on absent objects {_rate(summary['absent_yes_rate'])}), "
            f"{summary['wrong']['never_led']} of "
            f"{summary['wrong']['n']} wrong answers never had the right one leading"
        )
    settings = {
        "model": loaded.name,
        "suffix": suffix,
        "limit": limit,
        "questions": [str(q) for q in questions],
    }
    write_json(out / "margins.json", {"settings": settings, "splits": results})
    typer.echo(f"wrote {out / 'margins.json'}")


def _rate(value: dict[str, Any]) -> str:
    """'0.123 [0.100, 0.150]', or '-' when there is no such question."""
    if value["mean"] is None:
        return "-"
    return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


@hallucination_app.command("trace")
def trace_command(
    trace: Annotated[Path, Flag("--trace", help="A trace whose samples carry ground truth.")],
    out: Annotated[Path, Flag("--out", help="Output folder (hallucination.json, words.png/.svg).")],
    n_boot: Annotated[int, Flag("--n-boot", help="Bootstrap replicates of the AUROC intervals.")] = 1000,
) -> None:
    """Score a trace against its ground truth, and compare faithful and hallucinated words layer by layer
    (trace features at the critical and mutation layers, AUROC with bootstrap intervals)."""
    from evolens.errors import UsageError
    from evolens.eval.trace_metrics import write_hallucination

    if not (trace / "meta.json").is_file():
        raise UsageError(f"{trace}: no trace there (no meta.json); run `evolens trace` first")
    record = write_hallucination(trace, out, n_boot)
    console = Console(width=120)
    for name in ("shapes", "coco"):
        if record[name] is not None:
            console.print_json(data={name: record[name]})
    words = record["words"]
    if words is not None:
        title = f"faithful vs hallucinated words ({words['n_words']} words, {words['n_samples']} samples)"
        table = Table(title=title)
        for column in ("feature", "AUROC [95% CI]", "mean faithful", "mean hallucinated"):
            table.add_column(column, justify="left" if column == "feature" else "right")
        for feature, stat in words["features"].items():
            means = words["feature_means"][feature]
            auroc = "-"
            if stat["auroc"] is not None:
                auroc = f"{stat['auroc']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"
            table.add_row(
                feature, auroc, *(f"{means[k]:.4f}" if means[k] is not None else "-" for k in means)
            )
        console.print(table)
    for note in record["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {out / 'hallucination.json'}")


@hallucination_app.command("words")
def words_command(
    trace: Annotated[Path, Flag("--trace", help="A trace whose samples carry ground truth.")],
    out: Annotated[Path, Flag("--out", help="Output folder (words.json, mentions.jsonl).")],
    amber_dir: Annotated[
        Path | None, Flag("--amber-dir", help="AMBER's data folder, for AMBER samples.")
    ] = None,
    n_boot: Annotated[int, Flag("--n-boot", help="Bootstrap replicates (over images).")] = 1000,
) -> None:
    """Object and attribute mentions aligned to their steps: per layer, the word's probability and rank, the
    correct word's lead, stage values; grounded vs hallucinated per word kind, with intervals over images."""
    from evolens.errors import UsageError
    from evolens.eval.amber import AmberData
    from evolens.eval.word_report import write_words

    if not (trace / "meta.json").is_file():
        raise UsageError(f"{trace}: no trace there (no meta.json); run `evolens trace` first")
    amber = AmberData.load(amber_dir) if amber_dir is not None else None
    report = write_words(trace, out, amber, n_boot)
    table = Table(title=f"{report['n_mentions']} mentions, {report['n_hallucinated']} hallucinated")
    for column in ("kind", "grounded", "hallucinated", "overtaken (correct word led)", "AUROC p(critical)"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, result in report["by_kind"].items():
        correct, auroc = result["correct_word"], result["auroc"]["prob_critical"]
        table.add_row(
            kind,
            str(result["grounded"]["n"]),
            str(result["hallucinated"]["n"]),
            f"{correct['overtaken']} of {correct['n_with_alternative']}",
            "-"
            if auroc["auroc"] is None
            else f"{auroc['auroc']:.3f} [{auroc['low']:.3f}, {auroc['high']:.3f}]",
        )
    Console(width=120).print(table)
    for reason, count in report["skipped_samples"].items():
        typer.echo(f"left out {count} samples: {reason}", err=True)
    typer.echo(f"wrote {out / 'words.json'} and {out / 'mentions.jsonl'}")


@hallucination_app.command("decode")
def decode_command(
    layers: Annotated[str, Flag("--layers", help="Lens layer(s) to mix in, e.g. 20 or 18-24 (DeCo).")],
    out: Annotated[Path, Flag("--out", help="Output folder (layer_mix.json, layer_mix.png/.svg).")],
    model: Annotated[str, Flag("--model")] = "demo",
    images: Annotated[Path | None, Flag("--images", help="An image, a folder or a JSONL manifest.")] = None,
    shapes: Annotated[int | None, Flag("--shapes", help="Use N shapes-world scenes (ground truth).")] = None,
    shapes_seed: Annotated[int, Flag("--shapes-seed")] = 20_000_000,
    prompt: Annotated[str, Flag("--prompt")] = "Describe this image.",
    alpha: Annotated[list[float] | None, Flag("--alpha", help="Mixing strength (0.5); repeatable.")] = None,
    top_k: Annotated[int, Flag("--top-k", help="Candidates kept from the final layer.")] = 10,
    max_new_tokens: Annotated[int, Flag("--max-new-tokens")] = 48,
    limit: Annotated[int | None, Flag("--limit")] = None,
    batch_size: Annotated[int, Flag("--batch-size")] = 8,
    device: Annotated[str, Flag("--device")] = "cpu",
) -> None:
    """Greedy decoding vs layer-mix decoding: hallucination, accuracy, agreement and speed."""
    from evolens.cli.inputs import experiment_samples
    from evolens.interventions.experiments import Condition, run_experiment
    from evolens.interventions.plan import LayerPlan, parse_layers
    from evolens.interventions.report import skip_table, write_skip_outputs
    from evolens.models import load_model

    alphas = alpha or [0.5]
    loaded = load_model(model, device=device)
    mix_layers = tuple(parse_layers(layers))
    none = LayerPlan.none(loaded.n_layers)
    conditions = [Condition("baseline", "baseline", none)] + [
        Condition(f"layer_mix a={a:g}", "layer_mix", none, mix=(mix_layers, a, top_k)) for a in alphas
    ]
    from evolens.interventions.layer_mix import LayerMixProcessor

    for condition in conditions[1:]:  # validate before generating anything
        LayerMixProcessor(loaded, mix_layers, condition.mix[1], top_k)  # type: ignore[index]
    out.mkdir(parents=True, exist_ok=True)
    samples, failures = experiment_samples(
        images, prompt, limit, shapes, shapes_seed, out, loaded.adapter.vision
    )
    summaries = run_experiment(loaded, samples, conditions, max_new_tokens, batch_size)
    settings = {
        "model": loaded.name,
        "n_layers": loaded.n_layers,
        "prompt": prompt,
        "max_new_tokens": max_new_tokens,
        "n_samples": len(samples),
        "failures": failures,
    }
    record = write_skip_outputs(out, summaries, samples, settings, stem="layer_mix")
    Console(width=150).print(skip_table(record, f"layer-mix decoding: {loaded.name}, {len(samples)} inputs"))
    typer.echo(f"wrote {out / 'layer_mix.json'}")
    if failures:
        raise typer.Exit(1)
