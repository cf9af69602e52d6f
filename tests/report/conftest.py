"""Fixtures the report tests share with the run tests: the tiny random LLaVA (a report of a real run)."""

from tests.run.conftest import tiny_vlm_dir

__all__ = ["tiny_vlm_dir"]
