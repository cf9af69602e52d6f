"""The report's image section in a real headless Chromium: the probe-word maps follow the layer slider with
summary.json's numbers, and the localisation curve is drawn with its band; without the image-token lens the
section is hidden."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evolens.analysis.localisation import image_side
from evolens.report import ReportInputs, build_report
from tests.analysis.test_localisation import N_LAYERS, planted
from tests.report.browser import ARTIFACTS, browser_page
from tests.report.synthetic_run import write_synthetic_run

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two reports of one synthetic run: its summary.json with the image entries of a planted trace
    (a red object found from lens layer 2 on), and as it was (no image-token lens)."""
    root = tmp_path_factory.mktemp("report")
    run = write_synthetic_run(root, n_samples=2)
    inputs = ReportInputs(trace_dir=run["trace"], analysis_dir=run["analysis"])
    plain = build_report(inputs, root / "plain.html")
    summary_path = run["analysis"] / "summary.json"
    summary = json.loads(summary_path.read_text())
    entries, _ = image_side(planted([2, 1, None]), ["s0", "s1"], str, 50, 0, figures=False)
    summary_path.write_text(json.dumps({**summary, **entries}))
    lensed = build_report(inputs, root / "maps.html")
    return {"plain": plain, "maps": lensed, "entries": entries}  # type: ignore[dict-item]


def test_the_maps_follow_the_layer_slider(reports: dict, tmp_path: Path) -> None:
    entries = reports["entries"]
    with browser_page(tmp_path / "profile") as (page, errors):
        page.goto(reports["maps"].as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        assert page.locator("#image-maps").is_visible()
        blocks = page.locator(".image-map-block")
        assert blocks.count() == 2
        first = blocks.nth(0)
        assert first.locator("svg.image-map").count() == 2  # red and blue
        assert first.locator("svg.image-map").nth(0).locator("rect").count() == 27
        slider = page.locator("#image-map-slider-0")
        assert slider.get_attribute("max") == str(N_LAYERS)
        for layer in (0, 2, N_LAYERS):
            slider.fill(str(layer))
            shown = page.evaluate(
                "[...document.querySelectorAll('.image-map-block')[0].querySelector('svg.image-map')"
                ".querySelectorAll('rect')].map((r) => Number(r.dataset.p))"
            )
            np.testing.assert_allclose(shown, entries["image_maps"][0]["probs"][0][layer], rtol=1e-6)
            assert first.locator(".image-map-layer").inner_text() == f"layer {layer}"
        assert page.locator("#localisation-plot.js-plotly-plot").count() == 1
        curve = page.evaluate("document.getElementById('localisation-plot').data.map((t) => t.y)")
        assert curve[2] == entries["localisation"]["score"] and curve[1] == entries["localisation"]["low"]
        assert "3 of 3 single-object scenes scored" in page.locator("#localisation-lead").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#image-maps").screenshot(path=str(ARTIFACTS / "report-image-maps.png"))
        assert not errors, errors

        page.goto(reports["plain"].as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        assert not page.locator("#image-maps").is_visible()
        assert not errors, errors
