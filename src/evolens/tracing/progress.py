"""Progress of a long step, readable in a terminal and in a log file.

In a terminal: a live bar with items done / total, tokens per second, elapsed time and time left. Written to
a file or a pipe: one plain line at the start, then at most one every ``interval_s`` seconds, and one at the
end, e.g. ``trace: 12/47 samples (26%), 31.4 tokens/s, 1:02 elapsed, ~2:56 left``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

ProgressCallback = Callable[[int, int], None]
"""Called as progress(done, total) after every batch (the ``trace`` API's own callback form)."""


def clock(seconds: float) -> str:
    """'1:02' or '1:02:03'."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Context manager reporting ``advance(n, tokens)`` calls against ``total`` items.

    Args:
        label: the step's name ("trace", "skip: baseline").
        total: items to do.
        unit: what an item is ("samples", "batches").
        stream: where to write (stderr by default); a terminal gets the live bar.
        interval_s: the least time between two lines when ``stream`` is not a terminal.
        enabled: False reports nothing (``--quiet``).
        callback: also called as callback(done, total) after every advance.
    """

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "samples",
        stream: TextIO | None = None,
        interval_s: float = 30.0,
        enabled: bool = True,
        callback: ProgressCallback | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.interval_s, self.enabled, self.callback = interval_s, enabled, callback
        self.done = self.tokens = 0
        self._started = self._last_line = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        self._started = self._last_line = time.perf_counter()
        if not self.enabled or self.total == 0:
            return self
        if self.stream.isatty():
            self._bar = _rich_bar(self.stream)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        else:
            self._line(f"{self.label}: {self.total} {self.unit} to do")
        return self

    def advance(self, items: int, tokens: int = 0) -> None:
        """``items`` more are done, having generated ``tokens`` tokens."""
        self.done += items
        self.tokens += tokens
        if self.callback is not None:
            self.callback(self.done, self.total)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=self._rate())
        elif time.perf_counter() - self._last_line >= self.interval_s:
            self._line(self.status())

    def status(self) -> str:
        """'trace: 12/47 samples (26%), 31.4 tokens/s, 1:02 elapsed, ~2:56 left'."""
        elapsed = time.perf_counter() - self._started
        share = self.done / self.total if self.total else 1.0
        parts = [f"{self.label}: {self.done}/{self.total} {self.unit} ({share:.0%})"]
        if self.tokens:
            parts.append(self._rate())
        parts.append(f"{clock(elapsed)} elapsed")
        if 0 < self.done < self.total:
            parts.append(f"~{clock(elapsed / self.done * (self.total - self.done))} left")
        return ", ".join(parts)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled and self.total and kind is None:
            self._line(self.status())

    def _rate(self) -> str:
        elapsed = time.perf_counter() - self._started
        return f"{self.tokens / elapsed:.1f} tokens/s" if elapsed > 0 and self.tokens else ""

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_line = time.perf_counter()


def _rich_bar(stream: TextIO) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=False,
    )
