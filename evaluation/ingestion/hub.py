"""Triplets from before/after edit datasets on the Hugging Face hub, read through
`datasets` (from the local cache; set HF_HUB_OFFLINE=1 on machines without network):

- InstructPix2Pix `timbrooks/instructpix2pix-clip-filtered`
  (original_prompt, original_image, edit_prompt, edited_prompt, edited_image)
- MagicBrush `osunlp/MagicBrush` (source_img, target_img, instruction, …)

A triplet takes A, A′ = one row's before/after and B, B′gt = another row's
before/after with the same edit prompt. The sample is seeded and its source row
ids are stored, so a benchmark is a file: it is written once as a triplet
Parquet file (the benchmark-file format) and read like one.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from evaluation.ingestion.files import Location, atomic_write
from evaluation.ingestion.sources import DatasetSpec


@dataclass(frozen=True)
class HubSchema:
    repo: str
    before: str
    after: str
    edit: str
    before_caption: str | None = None
    after_caption: str | None = None


HUB_SCHEMAS = {
    "instructpix2pix": HubSchema("timbrooks/instructpix2pix-clip-filtered", "original_image", "edited_image",
                                 "edit_prompt", "original_prompt", "edited_prompt"),
    "magicbrush": HubSchema("osunlp/MagicBrush", "source_img", "target_img", "instruction"),
}


def load_hub_dataset(spec: DatasetSpec):
    """The configured rows: local `data_files` (Parquet) if given, else the hub repo (or `repo:`)."""
    import datasets

    split = spec.options.get("split", "train")
    if spec.options.get("data_files"):
        return datasets.load_dataset("parquet", data_files=str(spec.path("data_files")), split=split)
    repo = spec.options.get("repo", HUB_SCHEMAS[spec.kind].repo)
    try:
        if spec.options.get("streaming"):
            stream = datasets.load_dataset(repo, split=split, streaming=True)
            rows = stream.take(int(spec.options.get("max_rows", 5000)))
            return datasets.Dataset.from_list(list(rows))
        return datasets.load_dataset(repo, split=split)
    except Exception as exc:  # datasets raises many types for "not cached / no network"
        raise RuntimeError(
            f"dataset {spec.name!r}: cannot load {repo} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            f"Fetch it on a machine with network (`hf download {repo} --repo-type dataset`) into the cache that "
            f"HF_HOME points at, or give `data_files:` (local Parquet files) in datasets.yaml.") from exc


def sample_pairs(edits: list[str], n: int, seed: int) -> list[tuple[int, int]]:
    """Seeded (row of A, row of B) pairs, distinct rows sharing an edit prompt.
    Groups are visited round-robin so n triplets cover as many prompts as possible."""
    rng = random.Random(f"hub-triplets:{seed}")
    groups: dict[str, list[int]] = defaultdict(list)
    for index, edit in enumerate(edits):
        groups[" ".join(str(edit).lower().split())].append(index)
    chains = []
    for rows in (g for g in groups.values() if len(g) >= 2):
        rows = rows[:]
        rng.shuffle(rows)
        # a cycle through the group: every row is A once and B once
        chains.append([(rows[i], rows[(i + 1) % len(rows)]) for i in range(len(rows))])
    rng.shuffle(chains)
    pairs = []
    for depth in range(max((len(c) for c in chains), default=0)):
        pairs += [chain[depth] for chain in chains if depth < len(chain)]
    return pairs[:n]


def _encoded(value) -> bytes | None:
    """A `datasets` image value (PIL image, {bytes, path} dict or bytes) as encoded bytes."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        return Path(value["path"]).read_bytes() if value.get("path") else None
    buffer = io.BytesIO()
    value.save(buffer, format="PNG")
    return buffer.getvalue()


def build_triplet_rows(dataset, kind: str, n: int, seed: int) -> list[dict]:
    schema = HUB_SCHEMAS[kind]
    rows = []
    for row_a, row_b in sample_pairs(dataset[schema.edit], n, seed):
        a, b = dataset[row_a], dataset[row_b]
        caption = lambda row, key: str(row[key]) if key and row.get(key) is not None else None  # noqa: E731
        rows.append({
            "triplet_id": f"{kind}-{row_a}-{row_b}",
            "instruction": str(a[schema.edit]),
            "a_png": _encoded(a[schema.before]),
            "a_prime_png": _encoded(a[schema.after]),
            "b_png": _encoded(b[schema.before]),
            "b_prime_gt_png": _encoded(b[schema.after]),
            "a_caption": caption(a, schema.before_caption),
            "a_prime_caption": caption(a, schema.after_caption),
            "b_caption": caption(b, schema.before_caption),
            "b_prime_caption": caption(b, schema.after_caption),
            "source_rows": json.dumps({"a": row_a, "b": row_b}),
        })
    return rows


TRIPLET_FILE_SCHEMA = pa.schema(
    [("triplet_id", pa.string()), ("instruction", pa.string())]
    + [(f"{r}_png", pa.binary()) for r in ("a", "a_prime", "b", "b_prime_gt")]
    + [(f"{r}_caption", pa.string()) for r in ("a", "a_prime", "b", "b_prime")]
    + [("source_rows", pa.string())]
)


def ensure_triplet_file(spec: DatasetSpec, cache_dir: Location) -> Location:
    """Build the seeded triplet file for a hub dataset once; later shards and runs reuse it."""
    n, seed = int(spec.options.get("n", 100)), int(spec.options.get("seed", 0))
    key = hashlib.sha256(json.dumps([spec.kind, spec.options], sort_keys=True, default=str).encode()).hexdigest()
    path = cache_dir / f"{spec.name}-{key[:12]}.parquet"
    if path.exists():
        return path
    rows = build_triplet_rows(load_hub_dataset(spec), spec.kind, n, seed)
    if not rows:
        raise ValueError(f"dataset {spec.name!r}: no two rows share an edit prompt, so no triplet can be built")
    write_triplet_file(rows, path)
    return path


def write_triplet_file(rows: list[dict], path: Location) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=TRIPLET_FILE_SCHEMA), buffer)
    atomic_write(path, buffer.getvalue())
