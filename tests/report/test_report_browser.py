"""report.html in a real headless Chromium: loads cleanly offline, the heatmap renders, hovering shows the
layer's top-k, and clicking a cell updates the probability chart. Keeps a screenshot in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolens.report import ReportInputs, build_report
from tests.report.browser import ARTIFACTS, browser_page
from tests.report.synthetic_run import N_LAYERS, VOCAB, write_synthetic_run

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
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-browser.png"), full_page=True)
        assert errors == [], f"console errors: {errors}"
