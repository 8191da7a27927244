"""The shapes dataset ingestion passes around: a configured dataset and a raw triplet.

Kept apart from `evaluation.ingestion.datasets` so that the readers of each kind (manifest,
hub) and the row builder import these without importing the dispatcher.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.ingestion.files import Location, location

ROLES = ("a", "a_prime", "b", "b_prime_gt")
CAPTION_ROLES = ("a", "a_prime", "b", "b_prime")  # b_prime = the caption of B′gt


@dataclass(frozen=True)
class DatasetSpec:
    """One configured dataset. `options` holds the kind's own keys (seed, n, path, …)."""

    name: str
    kind: str
    options: dict = field(default_factory=dict, hash=False)
    shard_size: int | None = None
    base_dir: Path = Path(".")

    def path(self, key: str = "path") -> Location:
        """The option as a location: a URL (`s3://…`, evaluation.ingestion.files.location) or a local path,
        relative to the datasets file's folder."""
        raw = self.options.get(key)
        if not raw:
            raise ValueError(f"dataset {self.name!r} ({self.kind}) needs `{key}:` in datasets.yaml")
        text = os.path.expandvars(str(raw))
        if "://" in text:
            return location(text)
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base_dir / path


@dataclass
class RawTriplet:
    """A triplet before its images are opened: each role is encoded bytes or a path
    (paths confined to `root` when set). `error` set ⇒ already known to be unusable."""

    triplet_id: str
    sources: dict[str, bytes | Path | None]
    root: Location | None = None
    instruction: str | None = None
    captions: dict[str, str | None] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    category: str | None = None  # the kind of edit (`category_of`), for per-category results
    error: str | None = None


# The rule for an edit prompt with no stated category (hub datasets): the first kind whose words it contains.
EDIT_KINDS = (
    ("remove", r"remove|delete|erase|get rid|take (?:away|out)|without"),
    ("style", r"style|painting|paint|drawing|sketch|cartoon|anime|watercolou?r|oil|pixel art|photo(?:graph)?"),
    ("scene", r"snow|winter|summer|autumn|fall|spring|night|day|sunset|sunrise|rain|fog|storm|weather|season"),
    ("colour", r"red|orange|yellow|green|blue|purple|violet|pink|brown|black|white|gr[ae]y|golden|colou?r"),
    ("replace", r"replace|turn|into|change|swap|make"),
    ("add", r"add|put|place|insert|give|with"),
)


def category_of(stated: str | None, instruction: str | None) -> str | None:
    """A triplet's category: the one its dataset states (the toy world's changed attribute, a manifest's
    `category`), else the kind of its edit prompt by EDIT_KINDS ('other' when none matches), else None."""
    if stated:
        return str(stated).strip().lower()
    if not instruction:
        return None
    words = instruction.lower()
    return next((kind for kind, pattern in EDIT_KINDS
                 if re.search(rf"\b(?:{pattern})(?:s|es|y|ed|er|ing)?\b", words)), "other")
