"""Object mentions aligned to generation steps on any trace (MSCOCO and shapes-world samples), the correct
word's lead and the word-level report, on a hand-built trace written through the real store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from evolens.analysis.stages import StageConfig, StageResult, build_stages
from evolens.cli import main
from evolens.data.shapes import Background, Scene
from evolens.eval.amber import AmberData
from evolens.eval.chair import CocoSynonyms
from evolens.eval.leads import correct_leads, is_word_start, last_lead, overtaken
from evolens.eval.mentions import amber_mentions, coco_mentions, shapes_mentions, step_span, token_offsets
from evolens.eval.word_layers import align_mentions, mention_values
from evolens.eval.word_report import word_report, write_words
from evolens.io.store import SampleRecord, TraceWriter, write_part
from evolens.io.trace import load_trace
from tests.eval.conftest import shape

L = 4  # decoder layers: lens layers 0..4
SCENE = Scene(3, Background("white", "plain"), (shape("star", "blue"), shape("circle", "red")))
STAGES = StageResult(L, 1, 1, (3,), build_stages(L, 1, 3), StageConfig())  # critical 1, mutation 3
BLUE, THE = 30, 31
DEFAULT_PROB, DEFAULT_RANK = [0.1, 0.2, 0.3, 0.4, 0.5], [3, 2, 1, 0, 0]


def test_coco_mentions_keep_chair_rules_with_spans() -> None:
    text = "A man rides a motor bike next to two dogs."
    found = coco_mentions(text, {"person", "motorcycle"}, CocoSynonyms.load())
    assert [(text[m.start : m.end], m.category, m.hallucinated) for m in found] == [
        ("man", "person", False),
        ("motor bike", "motorcycle", False),  # a double word: one mention over both words
        ("dogs", "dog", True),
    ]
    assert all(m.kind == "object" and m.alternatives == () for m in found)


def test_amber_mentions_keep_amber_rules_with_spans() -> None:
    data = AmberData.load(Path(__file__).parent / "fixtures" / "amber")
    text = "A woman by the lake, a dog and a boat under the orange sun."
    found = amber_mentions(text, data.annotations[1], data)
    assert [(text[m.start : m.end], m.hallucinated) for m in found] == [
        ("woman", False),  # associated with the truth object "person"
        ("lake", False),
        ("dog", True),
        ("boat", True),
        ("sun", True),  # "orange" is a safe word and never counted
    ]


def test_shapes_mentions_offer_the_correct_word() -> None:
    text = "A green star, a red square and a yellow shape."
    found = shapes_mentions(text, SCENE)
    assert [(m.word, m.kind, m.hallucinated, m.alternatives) for m in found] == [
        ("green", "attribute", True, ("blue",)),  # the star is blue
        ("star", "object", False, ("star",)),
        ("red", "attribute", True, ()),  # no square at all: no correct colour for it
        ("square", "object", True, ("circle",)),  # the red object is a circle
        ("yellow", "attribute", True, ("blue", "red")),  # a colour alone: any colour of the scene
    ]


def test_step_span_of_a_split_word() -> None:
    offsets = token_offsets(["A", " d", "og", "."])
    assert offsets == [0, 1, 3, 5, 6]
    assert step_span(offsets, 2, 5) == (1, 2)  # "dog" starts in " d" and ends in "og"
    assert step_span(offsets, 0, 1) == (0, 0)


def test_correct_word_leads_and_overtaken() -> None:
    assert is_word_start(" Blue", "blue") and is_word_start(" circ", "circle")
    assert not is_word_start(" b", "blue") and not is_word_start(" ", "blue")
    strings = {1: " blue", 2: " green", 3: " the"}.__getitem__
    top1 = np.array([[3, 1, 1, 2, 2], [3, 3, 3, 2, 2], [1, 1, 1, 1, 1]])
    leads = correct_leads(top1, [("blue",), ("blue",), ()], strings)
    assert leads[:2].tolist() == [[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert np.isnan(leads[2]).all()
    value = overtaken(leads, np.array([True, True, True]), np.array([0, 0, 0]), layer=3)
    assert value[:2].tolist() == [1.0, 0.0] and np.isnan(value[2])
    assert overtaken(leads, np.array([False] * 3), np.zeros(3), layer=3).tolist() == [0.0, 0.0, 0.0]
    assert last_lead(leads[0]) == 2 and last_lead(leads[1]) is None


def _record(
    sample_id: str, image: str | None, tokens: list[str], ids: list[int], truth: dict | None, **rows
) -> SampleRecord:
    """A store record; ``rows`` overrides step i's curves: ``prob_i``, ``rank_i``, ``jsd_i``, ``top1_i``."""
    n = len(tokens)
    prob = np.array([rows.get(f"prob_{i}", DEFAULT_PROB) for i in range(n)], dtype=np.float32)
    rank = np.array([rows.get(f"rank_{i}", DEFAULT_RANK) for i in range(n)], dtype=np.int32)
    jsd = np.array([rows.get(f"jsd_{i}", [0.3, 0.1, 0.05, 0.02]) for i in range(n)], dtype=np.float32)
    top1 = np.array([rows.get(f"top1_{i}", [THE] * (L + 1)) for i in range(n)], dtype=np.int32)
    topk_ids = np.stack([top1, top1 + 1000], -1)
    zeros = np.zeros((n, L + 1), dtype=np.float32)
    metrics = {
        "prob": prob,
        "rank": rank,
        "entropy": zeros + 1,
        "jsd_next": jsd,
        "jsd_last": zeros,
        "kl_last": zeros,
        "paper_js": None,
        "topk_ids": topk_ids,
        "topk_probs": np.stack([prob, prob / 2], -1),
    }
    return SampleRecord(
        sample_id, image, "Describe this image.", "".join(tokens), ids, tokens, metrics, truth
    )


@pytest.fixture()
def word_trace(tmp_path: Path) -> Path:
    """A: COCO "A man and a dog." (person only: "dog" hallucinated, split " d" + "og"); B: shapes
    "A green star." (the star is blue; " blue" led at layers 1-2); C: the same image, "A blue star.";
    D: no ground truth."""
    coco = {"source": "coco", "image_id": 1, "file_name": "a.jpg", "objects": ["person"]}
    scene = {"source": "shapes", **SCENE.to_dict()}
    records = [
        _record(
            "A", "a.jpg", ["A", " man", " and", " a", " d", "og", "."], [10, 11, 12, 13, 14, 15, 16], coco,
            prob_1=[0.1, 0.2, 0.5, 0.6, 0.8], rank_1=[5, 1, 0, 0, 0],
            prob_4=[0.05, 0.1, 0.2, 0.4, 0.6], rank_4=[9, 4, 2, 0, 0], jsd_4=[0.3, 0.1, 0.4, 0.2],
            prob_5=[0.5, 0.5, 0.9, 0.9, 0.9],
        ),
        _record(
            "B", "b.png", ["A", " green", " star", "."], [20, 21, 22, 23], scene,
            prob_1=[0.1, 0.1, 0.1, 0.3, 0.7], rank_1=[4, 3, 1, 0, 0], top1_1=[THE, BLUE, BLUE, 21, 21],
            top1_2=[THE, THE, 22, 22, 22],
        ),
        _record("C", "b.png", ["A", " blue", " star", "."], [20, BLUE, 22, 23], scene, top1_1=[BLUE] * 5),
        _record("D", None, ["Hi"], [40], None),
    ]  # fmt: skip
    meta = {"model": "synthetic", "revision": None, "dtype": "float32", "lens": "normed", "top_k": 2}
    directory = tmp_path / "trace"
    TraceWriter.open(directory, {**meta, "seed": 0, "n_layers": L, "paper_js": False}).close()
    write_part(directory, "part-00000.parquet", records)
    return directory


def test_mentions_aligned_and_measured_by_hand(word_trace: Path) -> None:
    trace = load_trace(word_trace)
    aligned = align_mentions(trace)
    assert [m.word for m in aligned.mentions] == ["man", "dog", "green", "star", "blue", "star"]
    assert aligned.skipped == {"no ground truth": 1}
    assert [len(s) for s in aligned.spans] == [1, 2, 1, 1, 1, 1]
    values = mention_values(trace, aligned, STAGES)
    assert values["prob"][0].tolist() == pytest.approx([0.1, 0.2, 0.5, 0.6, 0.8])
    dog = np.log([0.05, 0.1, 0.2, 0.4, 0.6]) + np.log([0.5, 0.5, 0.9, 0.9, 0.9])
    assert values["span_log_prob"][1] == pytest.approx(dog, rel=1e-5)
    assert values["prob_critical"].tolist() == pytest.approx([0.2, 0.1, 0.1, 0.2, 0.2, 0.2])
    assert values["jsd_mutation"][:2].tolist() == pytest.approx([0.05, 0.4])  # max JSD at layers 3..4
    assert values["decision_layer"].tolist() == [2, 3, 3, 3, 3, 3]
    assert list(values["decision_stage"][:2]) == ["stabilization", "mutation"]
    assert values["correct_leads"][2].tolist() == [0, 1, 1, 0, 0]  # " blue" led, then " green" took over
    assert np.isnan(values["correct_leads"][:2]).all()  # COCO offers no correct alternative
    assert values["overtaken"][2] == 1.0 and np.isnan(values["overtaken"][1])
    assert values["overtaken"][[0, 3, 4, 5]].tolist() == [0, 0, 0, 0]
    assert values["last_correct_lead"][2] == 2


def test_word_report_by_kind_with_image_clusters(word_trace: Path) -> None:
    trace = load_trace(word_trace)
    aligned = align_mentions(trace)
    values = mention_values(trace, aligned, STAGES)
    values["log_rank"] = np.log1p(values["rank"])
    report = word_report(trace, aligned, values, STAGES, n_boot=200)
    assert (report["n_mentions"], report["n_hallucinated"]) == (6, 2)
    objects, attributes = report["by_kind"]["object"], report["by_kind"]["attribute"]
    assert (objects["grounded"]["n"], objects["hallucinated"]["n"]) == (3, 1)
    assert (attributes["grounded"]["n"], attributes["hallucinated"]["n"]) == (1, 1)
    assert objects["grounded"]["n_images"] == 2  # B and C show the same image
    mean = objects["grounded"]["curves"]["prob"]["mean"]
    assert mean[4] == pytest.approx((0.8 + 0.5 + 0.5) / 3, abs=1e-6)
    assert attributes["correct_word"] == {
        "n_with_alternative": 1,
        "n_without_alternative": 0,
        "overtaken": 1,
        "never_led": 0,
        "last_layer_correct_led": [2],
    }
    assert objects["correct_word"]["n_without_alternative"] == 1  # "dog": COCO has no alternative
    everything = report["by_kind"]["all"]["auroc"]
    assert everything["prob_critical"]["auroc"] == 0.0  # 0.1 and 0.1 vs 0.2 four times
    assert everything["overtaken"]["auroc"] == 1.0 and everything["overtaken"]["n_undefined"] == 1


def test_words_command(word_trace: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "words"
    args = ["hallucination", "words", "--trace", str(word_trace), "--out", str(out), "--n-boot", "50"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "left out 1 samples: no ground truth" in captured.err
    lines = [json.loads(x) for x in (out / "mentions.jsonl").read_text().splitlines()]
    dog = lines[1]
    assert (dog["word"], dog["steps"], dog["tokens"], dog["hallucinated"]) == (
        "dog",
        [4, 5],
        [" d", "og"],
        True,
    )
    assert dog["span_log_prob"][4] == pytest.approx(math.log(0.6) + math.log(0.9), rel=1e-5)
    assert json.loads((out / "words.json").read_text())["schema"] == "evolens.hallucination-words/1"


def test_words_command_without_mentions_is_one_line(tmp_path: Path, capsys) -> None:
    directory = tmp_path / "plain"
    meta = {"model": "synthetic", "revision": None, "dtype": "float32", "lens": "normed", "top_k": 2}
    TraceWriter.open(directory, {**meta, "seed": 0, "n_layers": L, "paper_js": False}).close()
    write_part(directory, "part-00000.parquet", [_record("D", None, ["Hi"], [40], None)])
    code = main(["hallucination", "words", "--trace", str(directory), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("evolens:")]
    assert code != 0 and len(errors) == 1 and "no object mention" in errors[0] and "Traceback" not in err
    with pytest.raises(Exception, match="no object mention"):
        write_words(directory, tmp_path / "o2")
