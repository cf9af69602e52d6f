"""Progress that works in a log file: samples done/total, tokens/s, elapsed and time left, per stage."""

from __future__ import annotations

import io
import re

from evolens.tracing import progress as progress_module
from evolens.tracing.progress import Progress, clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_plain_lines_with_rate_and_time_left(monkeypatch) -> None:
    """Defect: with output to a log file nothing was printed during a 4-minute trace."""
    fake = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", fake)
    log = io.StringIO()  # not a terminal
    calls: list[tuple[int, int]] = []
    with Progress("trace", 4, stream=log, interval_s=30.0, callback=lambda d, t: calls.append((d, t))) as bar:
        fake.now += 10
        bar.advance(1, tokens=100)  # 10 s after the start: too soon for a line
        fake.now += 30
        bar.advance(1, tokens=200)  # 40 s: a line
        fake.now += 20
        bar.advance(2, tokens=300)
    lines = log.getvalue().splitlines()
    assert lines[0] == "trace: 4 samples to do"
    assert lines[1] == "trace: 2/4 samples (50%), 7.5 tokens/s, 0:40 elapsed, ~0:40 left"
    assert lines[-1] == "trace: 4/4 samples (100%), 10.0 tokens/s, 1:00 elapsed"
    assert len(lines) == 3 and calls == [(1, 4), (2, 4), (4, 4)]


def test_quiet_prints_nothing_and_clock_reads_hours() -> None:
    log = io.StringIO()
    with Progress("skip", 3, stream=log, enabled=False) as bar:
        bar.advance(3, tokens=9)
    assert log.getvalue() == ""
    assert clock(62) == "1:02" and clock(3723) == "1:02:03" and re.fullmatch(r"0:00", clock(-1))
