"""The report's sections of the findings a reviewer asks for, read from summary.json as the analysis wrote
them (never recomputed): the image effect per layer against each null (``image_effect``) and the
information probes per layer (``probes``). A key summary.json lacks (an older evolens) leaves its section
out and is named in the notes; a finding the analysis could not compute shows its reason in its section.
Conditions and attributes are listed in name order, so each keeps the colour the figures give it.
"""

from __future__ import annotations

from typing import Any

from evolens.vocabulary import METRICS

KEYS = {"image_effect": "the image effect against the nulls", "probes": "the information probes"}


def image_effect_section(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The image-effect curves: {"band", "resampled", "conditions", "metrics": [{"key", "label", "layers",
    "curves": [{"condition", "mean", "low", "high", "apart"}]}]}; {"reason"} when not computed; None when
    summary.json has no ``image_effect``."""
    effect = (summary or {}).get("image_effect")
    if not isinstance(effect, dict):
        return None
    conditions = effect.get("conditions")
    if not isinstance(conditions, dict) or not conditions:
        return {"reason": str(effect.get("not computed") or "no null traces")}
    metrics = []
    for key in effect.get("metrics") or []:
        curves = [
            {
                "condition": name,
                "mean": entry["metrics"][key]["mean"],
                "low": entry["metrics"][key]["low"],
                "high": entry["metrics"][key]["high"],
                "apart": entry["metrics"][key].get("layers_apart_from_0", []),
            }
            for name, entry in sorted(conditions.items())
            if key in entry.get("metrics", {})
        ]
        if not curves:
            continue
        first = next(iter(conditions.values()))["metrics"][key]
        label = METRICS[key].label if key in METRICS else str(first.get("label", key))
        metrics.append({"key": key, "label": label, "layers": first["layers"], "curves": curves})
    return {
        "band": effect.get("band"),
        "resampled": effect.get("resampled"),
        "conditions": [
            {
                "name": name,
                "n_images": entry.get("n_images"),
                "n_samples": entry.get("n_samples"),
                "n_tokens": entry.get("n_tokens"),
            }
            for name, entry in sorted(conditions.items())
        ],
        "metrics": metrics,
    }


def probes_section(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The probe curves: {"state", "interval", "prompts": [{"prompt", "asked", "control", "step",
    "n_images", "reason"?, "attributes": [{"name", "role", "layers", "accuracy", "low", "high", "chance"}
    or {"name", "role", "reason"}]}]}; {"reason"} when not computed; None without ``probes``."""
    probed = (summary or {}).get("probes")
    if not isinstance(probed, dict):
        return None
    if not isinstance(probed.get("prompts"), list):
        return {"reason": str(probed.get("not computed") or "no probes")}
    prompts = []
    for entry in probed["prompts"]:
        attributes = []
        for name, probe in sorted((entry.get("attributes") or {}).items()):
            shown = {"name": name, "role": probe.get("role")}
            if "accuracy" in probe:
                shown |= {k: probe[k] for k in ("layers", "accuracy", "low", "high", "chance", "n_images")}
            else:
                shown["reason"] = probe.get("not computed")
            attributes.append(shown)
        prompts.append(
            {
                "prompt": entry.get("prompt"),
                "asked": entry.get("asked"),
                "control": entry.get("control"),
                "step": entry.get("step"),
                "n_images": entry.get("n_images"),
                "reason": entry.get("not computed"),
                "attributes": attributes,
            }
        )
    return {
        "state": probed.get("state"),
        "interval": probed.get("interval"),
        "cross_validation": probed.get("cross_validation"),
        "prompts": prompts,
    }


def findings_notes(summary: dict[str, Any] | None) -> list[str]:
    """What the findings sections cannot show because summary.json (from an older evolens) lacks it."""
    if summary is None:
        return []
    return [
        f"summary.json has no {key} (written by an older evolens): {what} are not shown; "
        "run evolens analyze again"
        for key, what in KEYS.items()
        if key not in summary
    ]
