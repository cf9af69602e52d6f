"""The layer-skipping experiment, run the same way by ``evolens skip`` and by ``evolens run``'s skip stage:
conditions from a plan, every sample generated under each, the outputs written (``skip.json``, figure).

A plan is "stages" (skip the stages found in a trace of the same model: ``stage_conditions``) or explicit
decoder layers ("12-20", "3,5,7-9": ``custom_conditions``); each condition comes with ``seeds`` random
control sets of the same size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolens.analysis import detect_stages, load_trace
from evolens.data.resolve import Sample
from evolens.errors import UsageError
from evolens.interventions.experiments import Condition, custom_conditions, run_experiment, stage_conditions
from evolens.interventions.plan import LayerPlan
from evolens.interventions.report import write_skip_outputs
from evolens.models.loaded import LoadedModel


@dataclass(frozen=True)
class SkipPlan:
    """What to skip and how to generate.

    Attributes:
        plan: "stages", or decoder layers such as "12-20" or "3,5,7-9".
        seeds: random control sets per condition.
        max_new_tokens: generation budget per sample and condition.
        batch_size: samples per generate() call.
        trace: the trace folder whose stages the "stages" plan skips (a trace of the same model).
    """

    plan: str
    seeds: int = 3
    max_new_tokens: int = 48
    batch_size: int = 8
    trace: Path | None = None

    def conditions(self, n_layers: int) -> tuple[list[Condition], dict[str, Any] | None]:
        """The conditions, and the stage result they come from (None for explicit layers). A "stages" plan
        whose trace has no stages to skip raises the detector's ``EvolensError``."""
        seeds = list(range(self.seeds))
        if self.plan != "stages":
            return custom_conditions(LayerPlan.parse(self.plan, n_layers), seeds), None
        if self.trace is None:
            raise UsageError("--plan stages needs --trace TRACE_DIR (a trace of this model)")
        stages = detect_stages(load_trace(self.trace))
        if stages.n_layers != n_layers:
            raise UsageError(
                f"{self.trace} traces a model with {stages.n_layers} layers; this one has {n_layers}"
            )
        return stage_conditions(stages, seeds), stages.to_dict()


def run_skip(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    failures: list[str],
    plan: SkipPlan,
    out: Path,
    progress: Callable[[str], None] | None = None,
    conditions: tuple[list[Condition], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Run every condition of ``plan`` on ``samples`` and write the outputs into ``out``; returns the record
    (``skip.json``). ``failures``: "id: error" lines of the inputs left out; ``conditions``: the plan's, when
    the caller made them already."""
    chosen, stages = conditions if conditions is not None else plan.conditions(loaded.n_layers)
    summaries = run_experiment(loaded, samples, chosen, plan.max_new_tokens, plan.batch_size, progress)
    settings = {
        "model": loaded.name,
        "n_layers": loaded.n_layers,
        "prompts": sorted({sample.prompt for sample in samples}),
        "max_new_tokens": plan.max_new_tokens,
        "n_samples": len(samples),
        "random_seeds": list(range(plan.seeds)),
        "failures": failures,
    }
    return write_skip_outputs(out, summaries, samples, settings, stages)
