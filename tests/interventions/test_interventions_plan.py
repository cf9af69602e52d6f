"""Layer plans: parsing, validation (bad input ends in a UsageError) and the lens/decoder index mapping."""

from __future__ import annotations

import pytest

from evolens.errors import UsageError
from evolens.interventions.plan import LayerPlan, format_layers


def test_parse_ranges_and_lists() -> None:
    assert LayerPlan.parse("12-20", 30).skipped == frozenset(range(12, 21))
    assert LayerPlan.parse("3,5,7-9", 30).skipped == {3, 5, 7, 8, 9}
    assert LayerPlan.parse(" 0 - 1 , 29", 30).skipped == {0, 1, 29}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("28-31", "outside 0..29"),
        ("30", "outside 0..29"),
        ("", "empty skip"),
        (" , ", "empty skip"),
        ("0-29", "skipping all 30 layers"),
        ("20-12", "runs backwards"),
        ("twelve", "cannot read"),
        ("-3", "cannot read"),
    ],
)
def test_bad_specs_are_usage_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        LayerPlan.parse(spec, 30)


def test_early_exit_skips_the_layers_after_k() -> None:
    assert LayerPlan.early_exit(30, 20).skipped == frozenset(range(20, 30))
    assert LayerPlan.early_exit(30, 30).skipped == frozenset()
    with pytest.raises(UsageError):
        LayerPlan.early_exit(30, 0)
    with pytest.raises(UsageError):
        LayerPlan.early_exit(30, 31)


def test_lens_span_maps_lens_layers_to_decoder_layers() -> None:
    # lens layer a -> b is produced by decoder layers a..b-1
    assert LayerPlan.lens_span(32, 20, 28).skipped == frozenset(range(20, 28))
    with pytest.raises(UsageError):
        LayerPlan.lens_span(32, 5, 5)


def test_format_layers_round_trips() -> None:
    layers = {0, 1, 2, 5, 7, 8, 29}
    assert format_layers(layers) == "0-2,5,7-8,29"
    assert LayerPlan.parse(format_layers(layers), 30).skipped == layers
    assert LayerPlan.of(30, layers).describe() == "skip 0-2,5,7-8,29 (7/30 layers)"
