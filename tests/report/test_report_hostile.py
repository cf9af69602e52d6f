"""report.html over hostile text, in a real headless Chromium: prompts, sample ids, the title, generated
tokens, notes, failures and feature labels holding comment openers, script tags, CDATA, U+2028 and HTML.

Defect (issue 15, item 1): a prompt with ``<!--`` made the page blank (the browser's parser swallowed the
report's own script). Every section must render, no dialog may open, and every string must show as text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolens.io.trace import load_trace
from evolens.report import ReportInputs, build_report
from evolens.vocabulary import visible_token
from tests.report.browser import ARTIFACTS, browser_page
from tests.report.synthetic_run import write_synthetic_run

pytestmark = pytest.mark.browser

HOSTILE = [
    "<!--",
    "-->",
    "<script>alert(1)</script>",
    "</script>",
    "<![CDATA[",
    "]]>",
    "\u2028",
    "\u2029",
    "<img src=x onerror=alert(2)>",
    "$5 or $10",
    "\"double\" 'single'",
    "<b>bold</b>",
    "&amp; &lt;",
]
TITLE = 'Run <!-- <script>alert(1)</script> </script> <![CDATA[ ]]> \u2028 $5 or $10 "quoted"'
SAMPLE_IDS = ["<script>alert(5)</script>", "<!-- id", "x]]>\u2028y", '$5 or $10 "id"']
PROMPTS = [
    "What is shown here? <!-- <script> note",
    "Is this worth $5 or $10? </script><script>alert(6)</script>",
    "<![CDATA[ Describe. ]]> \u2028 Be brief.\u2029",
    "<img src=x onerror=alert(7)> 'single' \"double\"",
]
# the last text of the page's data opens a comment and a script that nothing closes afterwards: with
# "</" as the only escape, the parser then reads the report's own script as part of the data
NOTES = [
    "<img src=x onerror=alert(8)> capped at 24 images",
    "<!-- dropped --> 3 images",
    "What is shown here? <!-- <script> note",
]
FAILURE = {"sample_id": "<script>alert(9)</script>", "image": "<!--.png", "error": "</script> ]]> \u2028"}
SECTIONS = ("summary", "stages", "explore", "features", "experiments", "figures", "failures", "notes")


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    run = write_synthetic_run(
        root, vocab=HOSTILE, sample_ids=SAMPLE_IDS, prompts=PROMPTS, steps=[12, 8, 6, 5], seed=1
    )
    view_path = run["analysis"] / "features" / "tsne_tokens.json"
    view = json.loads(view_path.read_text())
    view["group"] = [HOSTILE[i % 4] for i in range(len(view["x"]))]
    view["text"] = [HOSTILE[(i + 5) % len(HOSTILE)] for i in range(len(view["x"]))]
    view["title"] = TITLE
    view_path.write_text(json.dumps(view))
    inputs = ReportInputs(
        trace_dir=run["trace"],
        analysis_dir=run["analysis"],
        experiments={"Layer skipping": run["skip"], "Hallucination <!--": run["hallucination"]},
        run={"data": "folder <!-- photos/ </script>", "notes": NOTES, "n_failed": 1},
        failures=[FAILURE],
        title=TITLE,
    )
    return build_report(inputs, root / "report.html")


def test_hostile_text_renders_as_text_in_every_section(hostile_report: Path, tmp_path: Path) -> None:
    trace = load_trace(hostile_report.parent / "trace")
    dialogs: list[str] = []
    with browser_page(tmp_path / "profile") as (page, errors):
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(hostile_report.as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)

        for section in SECTIONS:
            assert page.locator(f"#{section}").is_visible(), f"section {section} is not shown"
        assert page.locator("#curves .js-plotly-plot").count() == 4
        assert page.locator("#heatmap .hm image").count() == 1
        assert page.locator("#feature-grid .js-plotly-plot").count() == 1
        assert page.locator("#tables .experiment").count() == 2
        assert page.locator("#figure-grid img").count() == 1

        # the strings are text: title, run data, prompt, generated tokens, ids, notes, failures, labels
        assert page.locator("#title").text_content() == TITLE
        assert page.evaluate("document.title") == TITLE
        assert "folder <!-- photos/ </script>" in page.locator("#summary").inner_text()
        assert page.locator("#sample-prompt").text_content() == PROMPTS[0]
        tokens = list(trace.steps["token"].to_numpy()[trace.rows_of(SAMPLE_IDS[0])])
        chips = page.locator("#token-strip .tok").all_text_contents()
        assert chips == [visible_token(token) for token in tokens]
        assert {"<!--", "</script>", "<script>alert(1)</script>"} & set(tokens), "hostile tokens were emitted"
        ticks = page.locator("#heatmap .ytick text").all_text_contents()
        assert ticks == ["".join(list(visible_token(token))[:14]) for token in tokens]
        page.fill("#sample-filter", "alert(5)")
        assert page.locator("#sample-count").text_content().startswith("1 of 4")
        notes = page.locator("#note-list").text_content()
        assert all(note in notes for note in NOTES)
        assert FAILURE["sample_id"] in page.locator("#failures").inner_text()
        page.locator("#tables details").first.click()
        for details in page.locator("#tables details").all():
            details.evaluate("node => node.open = true")
        outputs = page.locator("#tables").text_content()
        assert all(sample_id in outputs for sample_id in SAMPLE_IDS) and "Hallucination <!--" in outputs
        legend = page.locator("#feature-grid .legendtext").all_text_contents()
        assert set(legend) == set(HOSTILE[:4])

        assert page.locator("img[src=x]").count() == 0, "no markup from the data became an element"
        assert page.evaluate("document.querySelectorAll('script').length") == 3
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-hostile.png"), full_page=True)
    assert dialogs == [], f"a dialog opened: {dialogs}"
    assert errors == [], f"console errors: {errors}"
