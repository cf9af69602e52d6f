"""The issue's "done when": the stage search recovers planted boundaries and invents none, on 200 + 200
synthetic trace sets written through the real trace store (``tests.analysis.stage_simulation``).

Planted sets vary the depth (L = 10, 12, 16), the number (1-3) and position of the boundaries, the noise
(Δ noise sd 0.03-0.1 per token, a random walk of the emitted token's logit), the number of images (8-12)
and prompts per image (1 or 2); a quarter come with a null trace that has no boundary. Null-like sets have
one regime throughout (steady; with noise correlated across layers; with ln p rising at a constant pace)
or plant the same boundaries in the trace and in its null trace (the image changes nothing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evolens.analysis.stage_search import StageSearch, StageSearchConfig, search_stages
from evolens.io.trace import Trace
from tests.analysis.stage_simulation import SimSet, make_set, split_sets, write_sets

N_SETS = 200
DEPTHS = (10, 12, 16)
PLANTED_KINDS = ("planted", "planted", "planted", "planted+null")
NULL_KINDS = ("steady", "smooth", "drift", "shared")
CONFIG = StageSearchConfig(n_perm=99, n_null_perm=99, scopes=("all",))


def search_all(sets: list[SimSet], directory: Path) -> list[tuple[SimSet, StageSearch]]:
    """Write ``sets`` through the store (one trace per depth, and its null trace), search every set."""
    traces: dict[str, Trace] = {}
    nulls: dict[str, Trace] = {}
    for depth in DEPTHS:
        group = [s for s in sets if s.n_layers == depth]
        traces |= split_sets(write_sets(directory / f"trace-{depth}", group))
        with_null = [s for s in group if s.null_records]
        if with_null:
            nulls |= split_sets(write_sets(directory / f"null-{depth}", with_null, null=True))
    results = []
    for s in sets:
        null = {"no-image": nulls[s.name]} if s.null_records else None
        results.append((s, search_stages(traces[s.name], null, CONFIG)))
    return results


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[SimSet, StageSearch]]:
    rng = np.random.default_rng(0)
    sets = [make_set(rng, i, PLANTED_KINDS[i % 4], DEPTHS[i % 3]) for i in range(N_SETS)]
    return search_all(sets, tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def null_like(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[SimSet, StageSearch]]:
    rng = np.random.default_rng(1)
    sets = [make_set(rng, N_SETS + i, NULL_KINDS[i % 4], DEPTHS[i % 3]) for i in range(N_SETS)]
    return search_all(sets, tmp_path_factory.mktemp("null"))


def found_layers(result: StageSearch) -> list[int]:
    return [b.layer for b in result.scopes["all"].boundaries]


def test_planted_boundaries_are_recovered_within_one_layer(planted: list[tuple[SimSet, StageSearch]]) -> None:
    recovered = [
        all(any(abs(layer - b) <= 1 for layer in found_layers(result)) for b in s.planted)
        for s, result in planted
    ]
    spurious = [
        any(all(abs(layer - b) > 1 for b in s.planted) for layer in found_layers(result))
        for s, result in planted
    ]
    print(f"recovered {np.mean(recovered):.3f}, sets with a spurious boundary {np.mean(spurious):.3f}")
    assert np.mean(recovered) >= 0.95
    with_null = [ok for (s, _), ok in zip(planted, recovered, strict=True) if s.kind == "planted+null"]
    assert len(with_null) == N_SETS // 4 and np.mean(with_null) >= 0.95, "a boundary the null lacks beats it"
    assert np.mean(spurious) <= 0.05


def test_null_like_sets_rarely_get_a_boundary(null_like: list[tuple[SimSet, StageSearch]]) -> None:
    reported = {kind: [bool(found_layers(r)) for s, r in null_like if s.kind == kind] for kind in NULL_KINDS}
    rate = np.mean([flag for flags in reported.values() for flag in flags])
    print(
        "false-boundary rate",
        f"{rate:.3f}",
        {kind: f"{np.mean(flags):.2f}" for kind, flags in reported.items()},
    )
    assert rate <= 0.05
    shared = [r.scopes["all"] for s, r in null_like if s.kind == "shared"]
    assert sum(bool(result.rejected) for result in shared) >= 0.9 * len(shared), (
        "the shared boundaries are candidates within the trace, removed by the null trace"
    )
