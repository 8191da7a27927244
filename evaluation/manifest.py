"""A folder of triplets described by a manifest: CSV (with a header) or JSONL,
one triplet a row, with keys `a, a_prime, b` and optionally `b_prime_gt,
instruction, triplet_id` and `a_caption, a_prime_caption, b_caption,
b_prime_caption`.

Image paths are relative to the manifest's folder and must stay inside it.
A row with a problem (empty required field, duplicated id) becomes a triplet
with `error` set; the other rows are unaffected.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from evaluation.datasets import CAPTION_ROLES, ROLES, RawTriplet

REQUIRED = ("a", "a_prime", "b")


def read_manifest_rows(path: Path) -> list[dict]:
    """Rows of a `.csv` or `.jsonl`/`.json` manifest as dicts of strings (empty values dropped)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    rows.append({"_error": f"line {number} is not JSON ({exc.msg})"})
    else:
        raise ValueError(f"{path}: a manifest is .csv or .jsonl, got {path.suffix!r}")
    return [{k: str(v).strip() for k, v in row.items() if k and v not in (None, "")} for row in rows]


def manifest_triplets(path: Path, rows: slice = slice(None)) -> list[RawTriplet]:
    root = path.resolve().parent
    all_rows = read_manifest_rows(path)
    triplets, first_seen = [], {}
    for number, row in enumerate(all_rows, start=1):
        triplet_id = row.get("triplet_id") or f"row-{number:05d}"
        error = row.get("_error")
        if not error and (missing := [k for k in REQUIRED if k not in row]):
            error = f"manifest row {number} has no {', '.join(missing)}"
        if triplet_id in first_seen:
            error = f"duplicated triplet_id {triplet_id!r} (first used in manifest row {first_seen[triplet_id]})"
            triplet_id = f"{triplet_id}#row-{number:05d}"  # keeps ids unique in the table
        first_seen.setdefault(triplet_id, number)
        triplets.append(
            RawTriplet(
                triplet_id=triplet_id,
                sources={role: Path(row[role]) if role in row else None for role in ROLES},
                root=root,
                instruction=row.get("instruction"),
                captions={role: row.get(f"{role}_caption") for role in CAPTION_ROLES},
                extra={"manifest_row": number},
                error=error,
            )
        )
    return triplets[rows]
