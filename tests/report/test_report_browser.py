"""report.html in a real headless Chromium: loads cleanly offline, the heatmap renders, hovering shows the
layer's top-k, and clicking a cell updates the probability chart; a deep model's long sample keeps its
layer axis in sight, whitespace tokens are visible, stages wear the figures' colours and the experiments
are compact tables. Keeps a screenshot in test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.cli import main
from evolens.report import ReportInputs, build_report
from evolens.vocabulary import EXPLORER, IMAGE_EFFECT, METRICS, STAGE_COLORS, visible_token
from tests.report.browser import ARTIFACTS, browser_page
from tests.report.synthetic_run import N_LAYERS, VOCAB, write_synthetic_run
from tests.run.test_run_nulls import nulls_config

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    run = write_synthetic_run(root, n_samples=4)
    inputs = ReportInputs(
        trace_dir=run["trace"],
        analysis_dir=run["analysis"],
        experiments={"Layer skipping": run["skip"]},
        failures=[{"sample_id": "broken", "image": "broken.png", "error": "not an image file"}],
        run={"data": "synthetic", "n_failed": 1},
    )
    return build_report(inputs, root / "report.html")


def check_findings(page, conditions: list[str], n_prompts: int) -> None:
    """The image effect: one plot per metric of ``IMAGE_EFFECT``, titled with the vocabulary's label, one
    mean line per null condition with its band; the probes: one plot per prompt, a line, a band and a
    chance line per probed attribute, the asked one named."""
    assert page.locator("#image-effect").is_visible() and page.locator("#probes").is_visible()
    plots = page.locator("#image-effect-grid .js-plotly-plot")
    assert plots.count() == len(IMAGE_EFFECT)
    titles = plots.locator(".gtitle").all_text_contents()
    assert titles == [f"Δ {METRICS[key].label}" for key in IMAGE_EFFECT]
    lines = page.evaluate(
        "[...document.querySelectorAll('#image-effect-grid .js-plotly-plot')].map((div) =>"
        " div.data.filter((t) => t.mode === 'lines+markers').map((t) => t.name))"
    )
    assert lines == [[f"real − {c}" for c in conditions]] * len(IMAGE_EFFECT)
    bands = page.evaluate("document.querySelector('#image-effect-grid .js-plotly-plot').data[1].fill")
    assert bands == "tonexty", "each line has its band"
    probes = page.locator("#probe-grid .js-plotly-plot")
    assert probes.count() == n_prompts
    first = page.evaluate("document.querySelector('#probe-grid .js-plotly-plot').data.map((t) => t.name)")
    assert "color (asked)" in first and "shape (control)" in first
    dotted = page.evaluate(
        "document.querySelector('#probe-grid .js-plotly-plot').data"
        ".filter((t) => t.line && t.line.dash === 'dot').length"
    )
    assert dotted >= 2, "every probed attribute has its chance line"
    assert "asked: color" in page.locator("#probe-grid h3").first.inner_text()


def cell_center(page, row: int, column: int, n_rows: int, n_columns: int) -> tuple[float, float]:
    """Viewport coordinates of a heatmap cell (row = step, column = position on the layer axis)."""
    page.locator("#heatmap").scroll_into_view_if_needed()
    box = page.locator("#heatmap .nsewdrag").first.bounding_box()
    return (
        box["x"] + (column + 0.5) * box["width"] / n_columns,
        box["y"] + (row + 0.5) * box["height"] / n_rows,
    )


def test_report_in_chromium(report_file: Path, tmp_path: Path) -> None:
    with browser_page(tmp_path / "profile") as (page, errors):
        page.goto(report_file.as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        assert page.evaluate("typeof window.Plotly") == "object", "plotly.js is inlined, not fetched"

        assert page.locator("#curves .js-plotly-plot").count() == 4, "the dataset curves are drawn"
        options = page.locator("#metric-select option").all_inner_texts()
        assert options == [
            METRICS[key].label + (" (log10(1 + rank))" if key == "rank" else "") for key in EXPLORER
        ], "the explorer names its metrics as the vocabulary does"
        assert page.locator("#feature-grid .js-plotly-plot").count() == 1, "the feature view is drawn"

        # the heatmap is drawn: one raster image of n_steps x L cells for the first sample
        sample = page.evaluate("window.evolensReport.data.samples[0]")
        n_rows = len(sample["tokens"])
        assert page.locator("#heatmap .hm image").count() == 1
        z = page.evaluate("document.getElementById('heatmap').data[0].z")
        assert len(z) == n_rows and len(z[0]) == N_LAYERS

        # hovering a cell names token, layer, value and that layer's top-k tokens
        x, y = cell_center(page, row=1, column=N_LAYERS - 1, n_rows=n_rows, n_columns=N_LAYERS)
        page.mouse.move(x, y, steps=4)
        page.wait_for_selector("#heatmap .hoverlayer .hovertext", timeout=5_000)
        hover = page.locator("#heatmap .hoverlayer .hovertext").text_content()
        top1 = VOCAB[sample["topk_ids"][1][N_LAYERS][0]].strip()
        assert f"layer {N_LAYERS}" in hover and "top-3" in hover and top1 in hover, hover

        # clicking a cell selects that token: the probability chart now shows its curve
        assert page.evaluate("document.getElementById('prob-chart').dataset.step") == "0"
        x, y = cell_center(page, row=3, column=2, n_rows=n_rows, n_columns=N_LAYERS)
        page.mouse.click(x, y)
        page.wait_for_function("document.getElementById('prob-chart').dataset.step === '3'", timeout=5_000)
        curve = page.evaluate("document.getElementById('prob-chart').data[0].y")
        assert curve == pytest.approx(sample["metrics"]["prob"][3], abs=1e-6)
        assert "Step 3" in page.locator("#prob-title").inner_text()
        assert page.evaluate("window.evolensReport.state.layer") == 3, "column 2 of JSD(l-1, l) is layer 3"

        # a token chip selects too, and the sample picker switches samples
        page.locator('#token-strip .tok[data-step="1"]').click()
        page.wait_for_function("document.getElementById('prob-chart').dataset.step === '1'", timeout=5_000)
        page.select_option("#sample-select", "2")
        page.wait_for_function("window.evolensReport.state.sample === 2", timeout=5_000)
        assert len(page.evaluate("document.getElementById('heatmap').data[0].z")) == len(
            page.evaluate("window.evolensReport.data.samples[2].tokens")
        )

        assert page.locator("#failures").is_visible() and "broken" in page.locator("#failures").inner_text()
        check_findings(page, conditions=["blank", "shuffled"], n_prompts=2)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-browser.png"), full_page=True)
        assert errors == [], f"console errors: {errors}"


WHITESPACE_VOCAB = [" ", "\n", "\t", " the", "  ", " red", ".", " circle", "\u00a0", " is"]


@pytest.fixture(scope="module")
def deep_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32-layer model, a 40-token sample, whitespace tokens, run timings and 20 samples of experiments."""
    root = tmp_path_factory.mktemp("deep")
    run = write_synthetic_run(root, n_samples=20, n_layers=32, vocab=WHITESPACE_VOCAB, steps=[40] + [4] * 19)
    view_path = run["analysis"] / "features" / "tsne_tokens.json"
    view = json.loads(view_path.read_text())
    n = len(view["x"])
    groups = ["flowers", "animals", None, "fruit"]
    view |= {
        "method": "pca",
        "explained": [0.341, 0.12],
        "group": [f"img{10 - i // 33}" for i in range(n)],  # img10, img9, img8, img7: sorted naturally
        "sample_group": [groups[i // 33] for i in range(n)],
        "answer": ["red"] * n,
    }
    view_path.write_text(json.dumps(view))
    inputs = ReportInputs(
        trace_dir=run["trace"],
        analysis_dir=run["analysis"],
        experiments={"Layer skipping": run["skip"], "Hallucination": run["hallucination"]},
        run={
            "stages": {
                "data": {"fingerprint": "a", "seconds": 0.4},
                "trace": {"fingerprint": "b", "seconds": 250.0},
            }
        },
    )
    return build_report(inputs, root / "report.html")


def test_deep_model_long_sample_whitespace_stages_and_experiments(deep_report: Path, tmp_path: Path) -> None:
    """Defects (issue 15, item 12): the heatmap's layer-axis title was cut off with 32+ rows, whitespace
    tokens showed as blanks, stage colours differed from the PNGs', a one-layer stage read "layers 32–32",
    no stage timings, and the Experiments section was a 3,900-px dump of flattened JSON."""
    with browser_page(tmp_path / "profile") as (page, errors):
        page.goto(deep_report.as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)

        # the layer axis and its title are in sight in the heatmap's box without scrolling it
        page.locator("#heatmap-scroll").scroll_into_view_if_needed()
        box = page.locator("#heatmap-scroll").bounding_box()
        assert page.evaluate("document.getElementById('heatmap-scroll').scrollTop") == 0
        assert len(page.evaluate("document.getElementById('heatmap').data[0].z")) == 40
        title = page.locator("#heatmap .g-xtitle text").bounding_box()
        assert page.locator("#heatmap .g-xtitle text").text_content() == "layer"
        assert box["y"] <= title["y"] and title["y"] + title["height"] <= box["y"] + box["height"], (
            box,
            title,
        )
        assert box["x"] <= title["x"] and title["x"] + title["width"] <= box["x"] + box["width"]

        # every token is visible: spaces, newlines, tabs and other blanks drawn as the figures draw them
        sample = page.evaluate("window.evolensReport.data.samples[0]")
        chips = page.locator("#token-strip .tok").all_text_contents()
        assert chips == [visible_token(token) for token in sample["tokens"]]
        assert all(chip.strip() and not any(ch.isspace() for ch in chip) for chip in chips), chips
        assert {" ", "\n", "\t", "  "} & set(sample["tokens"]), "the sample emitted whitespace tokens"
        ticks = page.locator("#heatmap .ytick text").all_text_contents()
        assert all(tick.strip() for tick in ticks) and len(ticks) == 40
        cells = page.locator("#topk-table td:first-child").all_text_contents()
        assert all(cell.strip() for cell in cells)

        # stage chips: the figures' colours and spans; one-layer stages read "layer 32"
        chips = page.locator("#stage-chips .chip.stage")
        assert chips.all_text_contents()[-1] == "mutation: layer 32"
        for chip, colour in zip(chips.all(), STAGE_COLORS.values(), strict=True):
            red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
            assert (
                chip.evaluate("node => getComputedStyle(node).borderLeftColor")
                == f"rgb({red}, {green}, {blue})"
            )

        # the stage search's verdicts, as summary.json words them, under the chips
        verdicts = page.evaluate("window.evolensReport.data.stages.verdicts")
        assert page.locator("#stage-verdicts li").all_text_contents() == verdicts and len(verdicts) == 3

        # the feature view: PCA axes with their variance, a legend of the samples' groups, colour by group
        feature = page.locator("#feature-grid .js-plotly-plot")
        assert feature.locator(".g-xtitle").text_content() == "PC1 (34.1%)"
        assert feature.locator(".legendtext").all_text_contents() == [
            "(no group)",
            "animals",
            "flowers",
            "fruit",
        ]
        layout = "document.querySelector('#feature-grid .js-plotly-plot').data"
        paths = page.evaluate(f"{layout}.filter((t) => t.mode === 'lines').length")
        assert paths == 4, "each image's path from shallow to deep is drawn"
        assert (
            page.evaluate(f"{layout}.filter((t) => t.mode === 'markers')[0].marker.colorscale") == "Viridis"
        )
        page.select_option("#feature-grid select", "group")
        colours = page.evaluate(f"{layout}.filter((t) => t.mode === 'markers').map((t) => t.marker.color)")
        assert len(set(colours)) == 4 and all(isinstance(c, str) for c in colours)

        timings = page.locator("#summary-body .summary-box", has_text="Stage timings").inner_text()
        assert "trace" in timings and "4 min 10 s" in timings and "total" in timings

        # experiments: one compact table per file, details closed until asked for
        skip = page.locator("#tables .experiment").first
        assert skip.locator("table").first.locator("tr").count() == 1 + 3, "header + one row per condition"
        assert skip.bounding_box()["height"] < 700, skip.bounding_box()
        assert page.locator("#experiments").bounding_box()["height"] < 1600
        outputs = skip.locator("details", has_text="Outputs")
        outputs.locator("summary").click()
        assert outputs.locator("tr").count() == 1 + 9 * 20, "every condition's output on every sample"
        assert errors == [], f"console errors: {errors}"


def test_findings_that_were_not_computed_say_why(tmp_path: Path) -> None:
    """A run without nulls and without hidden states: both sections are shown with the analysis' reason."""
    run = write_synthetic_run(tmp_path / "run", n_samples=2)
    summary = json.loads((run["analysis"] / "summary.json").read_text())
    summary["image_effect"] = {"not computed": "no null traces given"}
    summary["probes"] = {"not computed": "no stored hidden states (trace with --keep-hidden)"}
    (run["analysis"] / "summary.json").write_text(json.dumps(summary))
    report = build_report(
        ReportInputs(trace_dir=run["trace"], analysis_dir=run["analysis"]), tmp_path / "r.html"
    )
    with browser_page(tmp_path / "profile") as (page, errors):
        page.goto(report.as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        assert (
            page.locator("#image-effect .not-computed").inner_text() == "Not computed: no null traces given"
        )
        assert "no stored hidden states" in page.locator("#probes .not-computed").inner_text()
        assert page.locator("#image-effect .js-plotly-plot").count() == 0
        assert errors == [], f"console errors: {errors}"


@pytest.fixture(scope="module")
def run_with_nulls(tiny_vlm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``evolens run`` of the tiny LLaVA on 4 shapes scenes asked the colour question, hidden states kept,
    with the blank and shuffled nulls (tests/run/test_run_nulls.py)."""
    root = tmp_path_factory.mktemp("nulls-run")
    config = root / "run.yaml"
    config.write_text(nulls_config(tiny_vlm_dir, root / "out", root / "shapes"))
    assert main(["run", "--config", str(config), "--quiet"]) == 0
    return root / "out"


def test_a_run_with_nulls_shows_the_image_effect_and_the_probes(run_with_nulls: Path, tmp_path: Path) -> None:
    """The issue's "done when": a run with nulls produces the image-effect curves and the probe curves in
    summary.json, the figures and the report, and the report draws them."""
    summary = json.loads((run_with_nulls / "analysis" / "summary.json").read_text())
    assert {"image_effect.png", "probes.png"} <= set(summary["figures"])
    with browser_page(tmp_path / "profile") as (page, errors):
        page.goto((run_with_nulls / "report.html").as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        check_findings(page, conditions=["blank", "shuffled"], n_prompts=1)
        names = page.locator("#figure-grid figcaption").all_text_contents()
        assert "image_effect.png" in names and "probes.png" in names
        page.locator("#image-effect").screenshot(path=str(ARTIFACTS / "report-image-effect.png"))
        assert errors == [], f"console errors: {errors}"
