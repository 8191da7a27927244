"""Datasets: what a user configures in `datasets.yaml`, how a dataset is split
into shards (the pipeline's partitions) and how a shard's triplets are read.

    datasets:
      toy:        {kind: toy, seed: 0, n: 16}
      toy_full:   {kind: toy, seed: 1, n: 1000, shard_size: 250}
      mine:       {kind: manifest, path: data/triplets.csv}
      bench:      {kind: benchmark_file, path: toy_bench.parquet}
      ip2p:       {kind: instructpix2pix, n: 300, seed: 0, shard_size: 100}
      magicbrush: {kind: magicbrush, n: 100, data_files: /data/magicbrush/*.parquet}

Relative paths are relative to the YAML file; `$VARS` and `~` are expanded.
A dataset of more than `shard_size` triplets becomes partitions
`<name>.000`, `<name>.001`, …; otherwise its partition is `<name>`.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import yaml

from evaluation.ingestion.files import Location, parquet_metadata, read_parquet
from evaluation.ingestion.hub import ensure_triplet_file
from evaluation.ingestion.manifest import count_rows, manifest_triplets
from evaluation.ingestion.sources import CAPTION_ROLES, ROLES, DatasetSpec, RawTriplet, category_of

KINDS = ("toy", "benchmark_file", "manifest", "instructpix2pix", "magicbrush")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # no '.', which separates the shard number
PARTITION_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[0-9]{3,})?$")  # a dataset name, then its shard number

# The embedded default: small enough that `analogy demo` runs in minutes on 2 CPU cores.
DEFAULT_CONFIG = {"datasets": {"toy": {"kind": "toy", "seed": 0, "n": 16}}}


def config_path() -> Path | None:
    """`$ANALOGY_DATASETS`, else `./datasets.yaml`, else the checkout's datasets.yaml
    (an editable install run from another folder), else None: the embedded default."""
    if os.environ.get("ANALOGY_DATASETS"):
        return Path(os.environ["ANALOGY_DATASETS"]).expanduser()
    for candidate in (Path("datasets.yaml"), Path(__file__).resolve().parents[2] / "datasets.yaml"):
        if candidate.exists():
            return candidate
    return None


def load_specs(path: Path | None = None) -> dict[str, DatasetSpec]:
    """Parse a datasets.yaml (or the embedded default) into specs, checking names and kinds."""
    path = path if path is not None else config_path()
    if path is not None and not path.is_file():
        raise ValueError(f"the datasets file {path} does not exist (set ANALOGY_DATASETS, or write datasets.yaml)")
    raw = yaml.safe_load(path.read_text()) if path else DEFAULT_CONFIG
    base_dir = path.resolve().parent if path else Path.cwd()
    specs = {}
    for name, options in (raw or {}).get("datasets", {}).items():
        options = dict(options or {})
        kind = options.pop("kind", None)
        where = f"{path or 'default config'}: dataset {name!r}"
        if not NAME_PATTERN.match(str(name)):
            raise ValueError(f"{where}: names are lower-case letters, digits, '_' and '-'")
        if kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        shard_size = options.pop("shard_size", None)
        specs[name] = DatasetSpec(name, kind, options, int(shard_size) if shard_size else None, base_dir)
    if not specs:
        raise ValueError(f"{path}: no datasets configured")
    return specs


def triplet_count(spec: DatasetSpec) -> int | None:
    """Number of triplets, from cheap metadata only; None when it cannot be known yet. Never
    raises: a dataset that cannot be counted is one partition, and its triplets asset reports why."""
    try:
        if spec.kind in ("toy", "instructpix2pix", "magicbrush"):
            return int(spec.options.get("n", 16 if spec.kind == "toy" else 100))
        if spec.kind == "benchmark_file":
            return parquet_metadata(spec.path()).num_rows
        if spec.kind == "manifest":
            return count_rows(spec.path())
    except Exception:  # noqa: BLE001 — one unreadable dataset must not stop the code location loading
        return None
    return None


def shard_count(spec: DatasetSpec) -> int:
    if not spec.shard_size:  # one partition: nothing to count (and no remote file read at load)
        return 1
    count = triplet_count(spec)
    if count is None or count <= spec.shard_size:
        return 1
    return math.ceil(count / spec.shard_size)


def partition_keys(specs: dict[str, DatasetSpec]) -> list[str]:
    keys = []
    for name, spec in specs.items():
        shards = shard_count(spec)
        keys += [name] if shards == 1 else [f"{name}.{i:03d}" for i in range(shards)]
    return keys


def resolve_partition(specs: dict[str, DatasetSpec], key: str) -> tuple[DatasetSpec, slice]:
    """Partition key → its dataset and the slice of triplets it holds."""
    name, _, shard = key.partition(".")
    if name not in specs:
        raise KeyError(f"partition {key!r}: no dataset {name!r} in the datasets config ({', '.join(specs)})")
    spec = specs[name]
    if not shard:
        return spec, slice(None)
    index = int(shard)
    return spec, slice(index * spec.shard_size, (index + 1) * spec.shard_size)


def load_raw_triplets(spec: DatasetSpec, rows: slice, cache_dir: Location) -> list[RawTriplet]:
    """The triplets of one shard. `cache_dir` holds triplet files built from hub datasets."""
    if spec.kind == "toy":
        return toy_triplets(int(spec.options.get("seed", 0)), int(spec.options.get("n", 16)), rows)
    if spec.kind == "benchmark_file":
        return benchmark_file_triplets(spec.path(), rows)
    if spec.kind == "manifest":
        return manifest_triplets(spec.path(), rows)
    return benchmark_file_triplets(ensure_triplet_file(spec, cache_dir), rows)


def toy_triplets(seed: int, n: int, rows: slice = slice(None)) -> list[RawTriplet]:
    from models.toy.world import make_triplets, triplet_rows

    return [_from_benchmark_row(row) for row in triplet_rows(make_triplets(seed, n)[rows])]


def benchmark_file_triplets(path: Location, rows: slice = slice(None)) -> list[RawTriplet]:
    """A Parquet file with `triplet_id, a_png, a_prime_png, b_png` and optionally
    `b_prime_gt_png, instruction, changed, *_attrs` (toy) and `*_caption` columns."""
    table = read_parquet(path)
    missing = {"triplet_id", "a_png", "a_prime_png", "b_png"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: not a triplet file, missing columns {sorted(missing)}")
    start, stop, _ = rows.indices(table.num_rows)
    return [_from_benchmark_row(row) for row in table.slice(start, stop - start).to_pylist()]


def _from_benchmark_row(row: dict) -> RawTriplet:
    attrs = {role: json.loads(row[f"{role}_attrs"]) for role in ROLES if row.get(f"{role}_attrs")}
    captions = {role: row.get(f"{role}_caption") for role in CAPTION_ROLES}
    if attrs and not any(captions.values()):  # toy rows: the world's grammar gives the true captions
        from models.toy.world import Scene, caption

        captions = {role: caption(Scene(**attrs[a])) for role, a in zip(CAPTION_ROLES, ROLES, strict=True)}
    extra = {k: row[k] for k in ("changed", "source_rows") if row.get(k) is not None}
    if attrs:
        extra["attrs"] = attrs
    return RawTriplet(
        triplet_id=str(row["triplet_id"]),
        sources={role: row.get(f"{role}_png") for role in ROLES},
        instruction=row.get("instruction"),
        captions=captions,
        extra=extra,
        category=category_of(row.get("category") or row.get("changed"), row.get("instruction")),
    )
