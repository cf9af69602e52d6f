"""Headless Chromium for report tests: Debian's ``chromium`` driven by Python Playwright.

Playwright's own browser download is never used (it cannot be fetched here): the page runs in
``/usr/bin/chromium``, which ``ensure_chromium`` installs with apt-get when it is missing and we are root
(as in CI on a fresh machine). Each session gets a fresh profile folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("EVOLENS_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)


def ensure_chromium() -> Path:
    """``/usr/bin/chromium``, installed with apt-get when missing (root only); skips the test otherwise."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium, as root)")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        check=True,
        env=environment,
        capture_output=True,
    )
    return CHROMIUM


@contextmanager
def browser_page(profile: Path, width: int = 1440, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh headless Chromium profile, and the list its console errors are collected into."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = ensure_chromium()
    errors: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(executable),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.new_page()
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
            yield page, errors
        finally:
            context.close()


def screenshot(report: Path, out: Path, width: int = 1440, height: int = 1750) -> Path:
    """A PNG of the report from the stage curves through the sample explorer, e.g. for the README:
    ``python -m tests.report.browser runs/demo/report.html docs/img/report.png``."""
    import tempfile

    with (
        tempfile.TemporaryDirectory() as profile,
        browser_page(Path(profile), width, height) as (page, errors),
    ):
        page.goto(Path(report).resolve().as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        page.wait_for_timeout(500)
        out.parent.mkdir(parents=True, exist_ok=True)
        top = page.locator("#stages").bounding_box()["y"] - 12
        page.screenshot(
            path=str(out), full_page=True, clip={"x": 0, "y": top, "width": width, "height": height}
        )
        if errors:
            raise RuntimeError(f"console errors: {errors}")
    return out


if __name__ == "__main__":
    import sys

    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
