"""The run's causal stage: ``evolens causal`` on the traced answers (``causal:`` in the run config), with
the analysis's critical and mutation layers marked, into ``OUT/causal`` (a staged folder)."""

from __future__ import annotations

import json
from typing import Any

from evolens.interventions.causal import CausalPlan
from evolens.interventions.causal_run import run_causal, targets_from_trace, write_causal
from evolens.io import atomic
from evolens.pipeline.context import RunContext


def key_layers(context: RunContext) -> dict[str, int | None]:
    """The lens-based layers the effects are compared with: the stage search's critical and mutation
    layers (all tokens), and the threshold rule's, from the analysis's summary.json (empty without one)."""
    path = context.layout.analysis / "summary.json"
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text())
    found = ((summary.get("stage_search") or {}).get("scopes") or {}).get("all") or {}
    return {
        "critical (found)": (found.get("critical_layer") or {}).get("layer"),
        "mutation (found)": (found.get("mutation_layer") or {}).get("layer"),
        "critical (threshold rule)": summary.get("critical_layer"),
        "mutation (threshold rule)": summary.get("mutation_layer"),
    }


def causal_stage(context: RunContext) -> dict[str, Any]:
    """Every configured method on every traced answer with a target; the samples without one are listed in
    causal.json (``without_target``), not dropped silently."""
    config, loaded = context.config.causal, context.model
    targets, missing = targets_from_trace(loaded, context.layout.trace, config.answer, config.limit)
    context.say(f"causal: {len(targets)} targets; {len(missing)} answers without an answer word")
    batch_size, n_boot = context.config.trace.batch_size, context.config.analyze.n_boot
    results = []
    for method in config.methods:
        plan = CausalPlan(
            method, config.window, None, config.queries, config.baseline, config.corrupt, seed=0
        )
        results.append(
            run_causal(loaded, targets, plan, batch_size, n_boot, lambda m: context.say(f"causal: {m}"))
        )
    settings = {
        "model": loaded.name,
        "n_layers": loaded.n_layers,
        **config.model_dump(exclude={"methods"}),
        "n_boot": n_boot,
        "without_target": missing,
    }
    with atomic.staged_directory(context.layout.causal) as staging:
        write_causal(staging, results, settings, key_layers(context))
    return {"targets": len(targets), "methods": list(config.methods)}
