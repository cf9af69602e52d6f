"""The tested-status matrix of the model families, as written by ``scripts/model_matrix.py``.

``assets/model_status.json`` records, per family, whether its tiny-random-model tests passed, failed or were
skipped on each device ("cpu-fp32", "cuda-bf16"), with the transformers and torch versions they ran on.
``evolens models`` shows it; docs/model-status.md is the same matrix as a markdown table.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

STATUS_PATH = Path(str(resources.files("evolens") / "assets" / "model_status.json"))
DEVICES = ("cpu-fp32", "cuda-bf16")
DEVICE_LABELS = {"cpu-fp32": "CPU fp32", "cuda-bf16": "CUDA bf16"}


def load_status(path: Path = STATUS_PATH) -> dict[str, Any]:
    """The status JSON, or an empty matrix when it has not been generated yet."""
    if not path.is_file():
        return {"families": {}}
    return json.loads(path.read_text())


def family_status(status: dict[str, Any], family: str) -> dict[str, str]:
    """Device -> "passed" / "failed" / "skipped" / "not run" for one family ("untested" if absent)."""
    entry = status.get("families", {}).get(family)
    if entry is None:
        return dict.fromkeys(DEVICES, "untested")
    return {device: entry["status"].get(device, "not run") for device in DEVICES}
