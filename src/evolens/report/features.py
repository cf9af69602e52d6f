"""Feature-space views (t-SNE / PCA of per-layer hidden states) for the report, from the analysis' files.

A view is {"title", "method", "x", "y", "color", "color_label", "group", "text", "axis_titles", "answer",
"sample_group"}: one point per (token or image, layer), coloured by layer; ``group`` is what a point
belongs to (an image, a token), ``sample_group`` its sample's group label (a class subfolder) when the
samples carry one, ``answer`` the answer word of a many-images map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evolens.report.samples import rounded


def feature_views(analysis_dir: Path) -> list[dict[str, Any]]:
    """Every view stored under ``analysis_dir/features/*.json`` (sorted by file name)."""
    folder = Path(analysis_dir) / "features"
    if not folder.is_dir():
        return []
    views = []
    for path in sorted(folder.glob("*.json")):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        view = as_view(value, default_title=path.stem.replace("_", " "))
        if view is not None:
            views.append(view)
    return views


def as_view(value: Any, default_title: str) -> dict[str, Any] | None:
    """A view from a mapping with equal-length ``x``, ``y`` (and optional ``layer``/``color``, ``group``,
    ``text``) lists; None when the shape does not fit."""
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("x"), list)
        or not isinstance(value.get("y"), list)
    ):
        return None
    n = len(value["x"])
    if len(value["y"]) != n or n == 0:
        return None
    color = value.get("color", value.get("layer", [0] * n))
    group = value.get("group")
    text = value.get("text") or [f"point {i}" for i in range(n)]
    method = {"tsne": "t-SNE", "pca": "PCA"}.get(str(value.get("method")), value.get("method"))
    title = str(value.get("title") or default_title)
    return {
        "title": f"{title} · {method}" if method else title,
        "method": method,
        "axis_titles": axis_titles(method, value.get("explained")),
        "x": rounded(value["x"], 4),
        "y": rounded(value["y"], 4),
        "color": color,
        "color_label": value.get("color_label", "layer"),
        "group": _labels(group, n),
        "sample_group": _labels(value.get("sample_group"), n),
        "answer": _labels(value.get("answer"), n),
        "text": [str(t) for t in text][:n],
    }


def axis_titles(method: Any, explained: Any) -> list[str]:
    """["PC1 (34.1%)", "PC2 (12.0%)"] for PCA with its variance shares, else ["t-SNE 1", "t-SNE 2"]."""
    if method == "PCA" and isinstance(explained, list) and len(explained) == 2:
        return [f"PC{i + 1} ({100 * float(share):.1f}%)" for i, share in enumerate(explained)]
    return [f"{method or 'axis'} 1", f"{method or 'axis'} 2"]


def _labels(values: Any, n: int) -> list[str | None] | None:
    """One label per point (None kept for a point without one), or None when the list does not fit."""
    if not isinstance(values, list) or len(values) != n:
        return None
    return [None if v is None else str(v) for v in values]
