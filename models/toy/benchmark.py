"""Toy benchmark files: seeded analogy triplets with ground truth in one Parquet file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from models.toy.world import make_triplets, triplet_rows

ROLES = ("a", "a_prime", "b", "b_prime_gt")
BENCHMARK_SCHEMA = pa.schema(
    [("triplet_id", pa.string()), ("changed", pa.string()), ("instruction", pa.string())]
    + [(f"{r}_png", pa.binary()) for r in ROLES]
    + [(f"{r}_attrs", pa.string()) for r in ROLES]  # JSON {size, colour, shape, background}
)


def write_benchmark(path: Path, seed: int, n: int, textured: bool = False) -> Path:
    """Write N triplets (changed attribute round-robin) generated with `seed`; atomic. `textured`: the same
    triplets rendered in the textured world (blobs on the background; profile `toy-textured`)."""
    if n < 1:
        raise ValueError(f"a benchmark needs at least one triplet, got n={n}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(triplet_rows(make_triplets(seed, n), textured), schema=BENCHMARK_SCHEMA)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".parquet.tmp")
    os.close(fd)
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path
