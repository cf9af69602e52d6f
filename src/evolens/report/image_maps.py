"""The report's image section (``--image-tokens``): each analysed sample's probe-word maps over the image,
with a layer slider, and the shapes world's localisation curve, both as summary.json holds them
(``image_maps``, ``localisation``; ``evolens.analysis.localisation.image_side``)."""

from __future__ import annotations

from typing import Any


def image_maps_section(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """{"maps": summary.json's ``image_maps``, "localisation": its ``localisation`` or None}; None when the
    analysis wrote neither (a trace without the image-token lens)."""
    maps = (summary or {}).get("image_maps")
    found = (summary or {}).get("localisation")
    if not maps and not found:
        return None
    return {"maps": list(maps or []), "localisation": found}
