"""Where the right answer loses: per layer, the lens margin log p(correct) - log p(wrong) of a yes/no answer.

Each POPE question (or any yes/no question with a known answer) is scored twice by teacher forcing, with the
reply's first token "Yes" and "No" (``evolens score``; the same trace format, under ``out/<split>/yes`` and
``.../no``), which gives every layer's probability of both answers at the position that answers. The margin
at layer l is log p_l(correct) - log p_l(wrong); the model answers what its last layer prefers. For each
wrong final answer: the last layer at which the correct answer still led (or "never led"). Curves are means
over questions with a cluster-bootstrap interval over images, per split (random, popular, adversarial).
On the questions whose answer is "no", the yes-rate (the false-alarm rate) overall, with the same interval,
and per asked object (the name in POPE's "Is there a {name} in the image?"; a planted prior shows there).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evolens.analysis.bootstrap import bootstrap_mean
from evolens.data.resolve import Sample
from evolens.eval.pope import load_pope_questions
from evolens.io.store import read_trace
from evolens.models.loaded import LoadedModel
from evolens.tracing.spec import TraceSpec
from evolens.tracing.tracer import trace

ANSWERS = ("Yes", "No")
FLOOR = float(np.finfo(np.float32).smallest_subnormal)
"""A stored probability of 0 is below float32's range (the trace stores float32): read as this, ~1.4e-45."""
_ASKED = re.compile(r"^Is there an? (?P<name>.+?) in the image\?")


def asked_object(question: str) -> str | None:
    """The object a POPE question asks about ("Is there a red circle in the image?" -> "red circle")."""
    match = _ASKED.match(question.strip())
    return match.group("name") if match else None


def question_samples(path: Path, images: Path, suffix: str = "", limit: int | None = None) -> list[Sample]:
    """The questions of a POPE-format file as samples (id ``q<question_id>``, the image file under
    ``images``, the question plus ``suffix`` as the prompt, the label as ground truth)."""
    questions = load_pope_questions(path)[:limit]
    return [
        Sample(
            sample_id=f"q{q['question_id']}",
            image=images / str(q["image"]),
            prompt=f"{q['text']}{suffix}",
            ground_truth={"label": q["label"], "object": asked_object(str(q["text"]))},
        )
        for q in questions
    ]


def answer_token(loaded: LoadedModel, word: str) -> int:
    """The first token of ``word`` as the start of a reply."""
    return int(loaded.tokenizer(word, add_special_tokens=False)["input_ids"][0])


def score_answers(
    loaded: LoadedModel, samples: Sequence[Sample], out: Path, batch_size: int = 8, lens: str = "normed"
) -> dict[str, Path]:
    """Score every question with each answer's first token: one trace per answer under ``out``."""
    folders = {}
    for word in ANSWERS:
        token = answer_token(loaded, word)
        scored = [Sample(s.sample_id, s.image, s.prompt, s.ground_truth, s.group, (token,)) for s in samples]
        folders[word] = out / word.lower()
        trace(loaded, scored, None, out=folders[word], spec=TraceSpec(batch_size=batch_size, lens=lens))
    return folders


def answer_log_probs(folder: Path) -> tuple[list[str], np.ndarray, list[str | None], list[str]]:
    """sample ids, (n, L+1) log-probability of the scored answer per layer, labels and image paths."""
    ids, log_p, truths, images = _answers(folder)
    return ids, log_p, [_label(t) for t in truths], images


def _answers(folder: Path) -> tuple[list[str], np.ndarray, list[dict[str, Any]], list[str]]:
    import json

    tables = read_trace(folder)
    steps = tables.steps[tables.steps["step"] == 0].set_index("sample_id")
    samples = tables.samples.set_index("sample_id")
    ids = sorted(steps.index)
    prob = np.stack([np.asarray(steps.loc[i, "prob"], dtype=np.float64) for i in ids])
    log_p = np.log(np.clip(prob, FLOOR, None))
    raw = [samples.loc[i, "ground_truth"] for i in ids]
    truths = [json.loads(t) if isinstance(t, str) else {} for t in raw]
    return ids, log_p, truths, [str(samples.loc[i, "image"]) for i in ids]


def _label(truth: dict[str, Any]) -> str | None:
    value = truth.get("label")
    return value if value in ("yes", "no") else None


def margins(yes: Path, no: Path, n_boot: int = 1000) -> dict[str, Any]:
    """The margin curve, final answers and where wrong answers lost, from the two answer traces."""
    ids, log_yes, truths, images = _answers(yes)
    labels = [_label(t) for t in truths]
    ids_no, log_no, _, _ = _answers(no)
    if ids != ids_no:
        raise ValueError("the yes and no traces hold different questions")
    known = np.array([label is not None for label in labels])
    correct_is_yes = np.array([label == "yes" for label in labels])
    margin = np.where(correct_is_yes[:, None], log_yes - log_no, log_no - log_yes)[known]
    cluster_of = {image: index for index, image in enumerate(dict.fromkeys(images))}
    clusters = np.array([cluster_of[image] for image in images])[known]
    curve = bootstrap_mean(margin, clusters, len(cluster_of), n_boot=n_boot)
    said_yes = (log_yes[:, -1] > log_no[:, -1])[known]
    wrong = margin[:, -1] < 0
    led = [_last_lead(row) for row in margin[wrong]]
    absent = np.array([label == "no" for label in labels])
    said_yes_all = log_yes[:, -1] > log_no[:, -1]
    all_clusters = np.array([cluster_of[image] for image in images])
    with warnings.catch_warnings():  # replicates all equal (e.g. no false alarm at all): numpy warns, fine
        warnings.simplefilter("ignore", RuntimeWarning)
        false_alarm = bootstrap_mean(
            said_yes_all[absent, None].astype(np.float64),
            all_clusters[absent],
            len(cluster_of),
            n_boot=n_boot,
        )
    by_object: dict[str, list[bool]] = {}
    for truth, flag, is_absent in zip(truths, said_yes_all.tolist(), absent.tolist(), strict=True):
        if is_absent:
            by_object.setdefault(str(truth.get("object")), []).append(flag)
    return {
        "absent_yes_rate": {
            "mean": _scalar(false_alarm.mean),
            "low": _scalar(false_alarm.low),
            "high": _scalar(false_alarm.high),
            "n": int(absent.sum()),
        },
        "absent_yes_by_object": {
            name: {"n": len(flags), "yes": int(sum(flags))} for name, flags in sorted(by_object.items())
        },
        "margin": curve.to_dict(),
        "n_questions": int(known.sum()),
        "n_images": len(set(clusters.tolist())),
        "accuracy": float((~wrong).mean()) if len(wrong) else None,
        "yes_rate": float(said_yes.mean()) if len(said_yes) else None,
        "wrong": {
            "n": int(wrong.sum()),
            "never_led": sum(layer is None for layer in led),
            "last_layer_correct_led": [layer for layer in led if layer is not None],
        },
    }


def _scalar(values: np.ndarray) -> float | None:
    return float(values[0]) if len(values) and np.isfinite(values[0]) else None


def _last_lead(row: np.ndarray) -> int | None:
    """The last layer at which the correct answer led (margin > 0), None if it never did."""
    leading = np.flatnonzero(row > 0)
    return int(leading[-1]) if len(leading) else None
