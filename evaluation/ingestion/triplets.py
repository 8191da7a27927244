"""A raw triplet → a row of the `triplets` table, its images validated and stored.

Repairs (greyscale, palette, RGBA, …) are recorded in `notes`; an unusable
image turns the row into an error row naming the role, the file and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from evaluation.ingestion.images import ImageError, load_image
from evaluation.ingestion.sources import CAPTION_ROLES, ROLES, RawTriplet

REQUIRED_ROLES = ("a", "a_prime", "b")


def triplet_row(raw: RawTriplet, source: str, put_png: Callable[[Image.Image], str]) -> dict:
    """Validate each image, store it with `put_png` (RGB image → its hash) and build the row."""
    row = {
        "triplet_id": raw.triplet_id,
        "source": source,
        "instruction": raw.instruction,
        **{f"{role}_caption": raw.captions.get(role) for role in CAPTION_ROLES},
        "extra": json.dumps(raw.extra, sort_keys=True, default=str) if raw.extra else None,
        "category": raw.category,
        **{f"{role}_hash": None for role in ROLES},
        "notes": None,
        "error": raw.error,
    }
    if raw.error:
        return row
    notes, images = [], {}
    for role in ROLES:
        source_value = raw.sources.get(role)
        if source_value is None:
            if role in REQUIRED_ROLES:
                row["error"] = f"{role}: no image given"
                return row
            continue
        label = f"{role} ({source_value})" if isinstance(source_value, Path) else role
        try:
            loaded = load_image(source_value, root=raw.root)
        except ImageError as exc:
            row["error"] = f"{label}: {exc}"
            return row
        notes += [f"{label}: {note}" for note in loaded.notes]
        images[role] = loaded.image
    for role, image in images.items():  # store only once the whole triplet is known to be usable
        row[f"{role}_hash"] = put_png(image)
    row["notes"] = json.dumps(notes) if notes else None
    return row
