"""The interactive, self-contained ``report.html`` of a run (see docs/report.md)."""

from evolens.report.build import ReportInputs, build_report, collect, render

__all__ = ["ReportInputs", "build_report", "collect", "render"]
