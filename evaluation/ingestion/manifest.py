"""A folder of triplets described by a manifest: CSV (with a header) or JSONL,
one triplet a row, with keys `a, a_prime, b` and optionally `b_prime_gt,
instruction, triplet_id, category` and `a_caption, a_prime_caption, b_caption,
b_prime_caption`.

Image paths are relative to the manifest's folder and must stay inside it.
Every row-level problem — a line that is not JSON or not a JSON object, bytes
that are not UTF-8, a NUL byte, a missing or unknown field, a duplicated id —
makes that row a triplet with `error` set (naming the manifest, the line and the
reason); the other rows are unaffected. Text is kept exactly: CSV is parsed by
the `csv` module with its quoting, JSONL is split on newlines only (never on
U+2028 or U+0085, which may stand inside a string).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from evaluation.ingestion.files import StoreFault, is_remote
from evaluation.ingestion.sources import CAPTION_ROLES, ROLES, RawTriplet, category_of

REQUIRED = ("a", "a_prime", "b")
FIELDS = frozenset((*ROLES, "instruction", "triplet_id", "category", *(f"{role}_caption" for role in CAPTION_ROLES)))
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def _kind(path: Path) -> str:
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path}: a manifest is .csv or .jsonl, got {path.suffix!r}") from None


def _read_text(path: Path) -> str:
    """The manifest's text; bytes that are not UTF-8 become lone surrogates, found per row below."""
    try:
        data = path.read_bytes()
    except StoreFault:  # the store or the disk, not the manifest
        raise
    except OSError as exc:
        raise ValueError(f"manifest {path} cannot be read: {exc.strerror or exc}") from None
    return data.decode("utf-8-sig", errors="surrogateescape")


def _problem(value: str) -> str | None:
    if "\x00" in value:
        return "holds a NUL byte"
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        return "is not valid UTF-8"
    return None


def _records(path: Path) -> list[tuple[int, dict | None, str | None]]:
    """(line number, fields or None, error or None) per record of the manifest."""
    text, kind = _read_text(path), _kind(path)
    out = []
    if kind == "csv":
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return []
        except csv.Error as exc:
            raise ValueError(f"manifest {path}: the header cannot be parsed ({exc})") from None
        header = [h.strip() for h in header]
        while True:
            line = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                out.append((line, None, f"is not valid CSV ({exc})"))
                continue
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                out.append((line, None, f"has {len(values)} fields, the header has {len(header)}"))
                continue
            out.append((line, dict(zip(header, values)), None))
        return out
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        if problem := _problem(line):
            out.append((number, None, problem))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            out.append((number, None, f"is not JSON ({exc.msg})"))
            continue
        if not isinstance(value, dict):
            out.append((number, None, f"is a JSON {_json_type(value)}, expected an object"))
            continue
        out.append((number, value, None))
    return out


def _json_type(value) -> str:
    return {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _clean(fields: dict) -> tuple[dict[str, str], str | None]:
    """Fields as stripped strings (empty ones dropped), or the first problem with them."""
    unknown = sorted(str(k) for k in fields if k not in FIELDS)
    if unknown:
        return {}, f"has unknown field(s) {unknown}; known: {sorted(FIELDS)}"
    row = {}
    for key, value in fields.items():
        if value is None or value == "":
            continue
        if isinstance(value, (dict, list)):
            return {}, f"field {key!r} is a JSON {_json_type(value)}, expected text"
        text = str(value).strip()
        if problem := _problem(text):
            return {}, f"field {key!r} {problem}"
        if text:
            row[key] = text
    return row, None


def read_manifest_rows(path: Path) -> list[dict]:
    """Rows as dicts of strings; a row with a problem is {"_error": reason, "_line": n}."""
    rows = []
    for line, fields, error in _records(path):
        row, error = ({}, error) if error else _clean(fields)
        if error:
            row = {"_error": f"{path.name} line {line} {error}"}
            triplet_id = fields.get("triplet_id") if fields else None
            if isinstance(triplet_id, str) and triplet_id.strip() and not _problem(triplet_id):
                row["triplet_id"] = triplet_id.strip()  # the error row keeps its id where it has a usable one
        rows.append({**row, "_line": line})
    return rows


def count_rows(path: Path) -> int:
    """The number of triplets the manifest describes (bad rows included), for sharding."""
    return len(_records(path))


def manifest_triplets(path: Path, rows: slice = slice(None)) -> list[RawTriplet]:
    root = path.parent if is_remote(path) else path.resolve().parent
    all_rows = read_manifest_rows(path)
    triplets, first_seen = [], {}
    for number, row in enumerate(all_rows, start=1):
        triplet_id = row.get("triplet_id") or f"row-{number:05d}"
        error = row.get("_error")
        if not error and (missing := [k for k in REQUIRED if k not in row]):
            error = f"{path.name} line {row['_line']} (row {number}) has no {', '.join(missing)}"
        if triplet_id in first_seen:
            error = f"duplicated triplet_id {triplet_id!r} (first used in manifest row {first_seen[triplet_id]})"
            triplet_id = f"{triplet_id}#row-{number:05d}"  # keeps ids unique in the table
        first_seen.setdefault(triplet_id, number)
        triplets.append(
            RawTriplet(
                triplet_id=triplet_id,
                sources={role: Path(row[role]) if role in row and not error else None for role in ROLES},
                root=root,
                instruction=None if error else row.get("instruction"),
                captions={role: None if error else row.get(f"{role}_caption") for role in CAPTION_ROLES},
                extra={"manifest_row": number, "manifest_line": row["_line"]},
                category=None if error else category_of(row.get("category"), row.get("instruction")),
                error=error,
            )
        )
    return triplets[rows]
