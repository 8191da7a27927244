"""The embedded storage layout under `$ANALOGY_HOME` (default `./.analogy`):

    tables/<table>/dataset=<partition>/part-0.parquet   one schema per table (evaluation.presentation.schemas)
    blobs/png/<image hash>.png                          images, named by their pixels (ops.cache.image_hash)
    blobs/cache/<kind>/<key>.<ext>                      method intermediates (orchestration.cache)
    analogy.duckdb                                      views over tables/
    reports/dataset=<partition>/                        HTML gallery and plots
    dagster/                                            DAGSTER_HOME for the CLI's runs

Every write goes to a temporary name in the target folder and is renamed into
place, so a reader never sees half a file and a re-run replaces, never appends.

`$ANALOGY_HOME` may also be an object store URL (`s3://bucket/prefix`, or any fsspec protocol;
evaluation.ingestion.files.location) with the same layout: each file is then one whole-object PUT, and
analogy.duckdb is built locally and uploaded whole (its views read `s3://…/tables/`).

A store that does not answer (evaluation.ingestion.files.StoreUnavailable, after bounded retries) or a full
disk (DiskFull; `disk_fault` also for the writers that do not raise it, such as Dagster's sqlite)
fails the write in one line; what was written before is kept, so a re-run goes on from there.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from evaluation.ingestion.datasets import PARTITION_PATTERN
from evaluation.ingestion.files import (
    DiskFull,
    Location,
    atomic_write,
    causes,
    disk_full,
    free_space,
    full_disk_errno,
    is_remote,
    location,
    parquet_metadata,
    read_parquet,
)
from evaluation.ingestion.images import png_bytes
from evaluation.presentation.schemas import TABLES
from ops.cache import image_hash

DEFAULT_HOME = "./.analogy"
FULL_BELOW = 1 << 20
"""Free bytes under which a failed write is taken for a full disk (sqlite reports some ENOSPC as a
"disk I/O error")."""


def analogy_home(home: str | Location | None = None) -> Location:
    """`home`, else `$ANALOGY_HOME`, else `./.analogy`: an absolute local path, or an object store
    location for a URL (`s3://bucket/prefix`)."""
    return location(home or os.environ.get("ANALOGY_HOME") or DEFAULT_HOME)


def dagster_home(home: Location) -> Path:
    """The default DAGSTER_HOME of the CLI's runs: `<home>/dagster` for a local home; Dagster's own
    run and event storage is local (sqlite), so for a home on an object store `./.analogy/dagster`."""
    return (location(DEFAULT_HOME) if is_remote(home) else home) / "dagster"


def disk_fault(exc: BaseException, places: list[Location]) -> DiskFull | None:
    """`exc` as a DiskFull (one line) where it comes from a full disk: said so (ENOSPC, EDQUOT, or a
    writer's message of it), or a write error while one of the local `places` (the home, DAGSTER_HOME)
    has less than FULL_BELOW left; else None."""
    chain = list(causes(exc))
    if found := next((e for e in chain if isinstance(e, DiskFull)), None):
        return found
    local = [Path(p) for p in places if not is_remote(p)]
    if not local:
        return None
    free, fullest = min((free_space(p)[0], p) for p in local)
    code = full_disk_errno(exc)
    if code is None and free < FULL_BELOW and any(isinstance(e, (OSError, sqlite3.Error)) for e in chain):
        code = errno.ENOSPC
    return None if code is None else disk_full(fullest, None, code)


class Store:
    """Reads and writes tables and blobs under one `$ANALOGY_HOME`."""

    def __init__(self, home: str | Location | None = None):
        self.home = analogy_home(home)
        self.remote = is_remote(self.home)

    # --- tables -----------------------------------------------------------------
    def partition_dir(self, table: str, partition: str) -> Location:
        """Refuses (ValueError) a table the project does not have and a partition key that is not a
        dataset name (with its shard number): a name from a file never climbs out of `tables/`."""
        if table not in TABLES:
            raise ValueError(f"no table {table!r}; tables: {', '.join(sorted(TABLES))}")
        if not PARTITION_PATTERN.match(str(partition)):
            raise ValueError(f"{partition!r} is not a partition key (a dataset name such as 'toy', or 'name.000')")
        return self.tables_root / table / f"dataset={partition}"

    def table_path(self, table: str, partition: str) -> Location:
        return self.partition_dir(table, partition) / "part-0.parquet"

    def write_table(self, table: str, partition: str, rows: list[dict]) -> Location:
        """Replace the partition's file with `rows`, validated against the table's schema."""
        data = pa.Table.from_pylist(rows, schema=TABLES[table])
        buffer = io.BytesIO()
        pq.write_table(data, buffer)
        path = self.table_path(table, partition)
        atomic_write(path, buffer.getvalue(), clean_stale=True)
        for stale in path.parent.glob("part-*.parquet"):  # a partition is exactly one file
            if stale != path:
                stale.unlink()
        return path

    def read_table(self, table: str, partition: str) -> list[dict]:
        path = self.table_path(table, partition)
        if not path.exists():
            raise FileNotFoundError(f"no {table} for partition {partition!r} at {path}; materialise {table} first")
        return read_parquet(path, schema=TABLES[table]).to_pylist()

    def previous_rows(self, table: str, partition: str) -> list[dict]:
        """The partition's rows from an earlier run, or [] where there is none or it was written
        with other columns (an older version: its rows are recomputed, not misread)."""
        path = self.table_path(table, partition)
        if not path.exists() or parquet_metadata(path).schema.to_arrow_schema().remove_metadata() != \
                TABLES[table].remove_metadata():
            return []
        return self.read_table(table, partition)

    def tables_with_files(self) -> list[str]:
        root = self.tables_root
        return sorted(p.name for p in root.iterdir() if any(p.glob("*/*.parquet"))) if root.exists() else []

    # --- blobs ------------------------------------------------------------------
    def blob_path(self, kind: str, digest: str, ext: str) -> Location:
        return self.home / "blobs" / kind / f"{digest}.{ext}"

    def put_blob(self, kind: str, data: bytes, ext: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(kind, digest, ext)
        if not path.exists():  # same content, same name: nothing to do
            atomic_write(path, data)
        return digest

    def put_png(self, image: Image.Image) -> str:
        """Store an image as PNG, named by its pixels' hash (ops.cache.image_hash: the hash every
        cache key and seed uses), so the name of a stored image is the hash of what `get_png` returns."""
        digest = image_hash(image)
        path = self.png_path(digest)
        if not path.exists():
            atomic_write(path, png_bytes(image))
        return digest

    def png_path(self, digest: str) -> Location:
        return self.blob_path("png", digest, "png")

    def get_png(self, digest: str) -> Image.Image:
        with Image.open(io.BytesIO(self.png_path(digest).read_bytes())) as image:
            return image.convert("RGB")

    def put_tensors(self, tensors: dict[str, torch.Tensor]) -> str:
        data = save_safetensors({k: v.contiguous() for k, v in tensors.items()})
        return self.put_blob("tensors", data, "safetensors")

    def get_tensors(self, digest: str) -> dict[str, torch.Tensor]:
        return load_safetensors(self.blob_path("tensors", digest, "safetensors").read_bytes())

    # --- other places -----------------------------------------------------------
    @property
    def duckdb_path(self) -> Location:
        return self.home / "analogy.duckdb"

    @property
    def tables_root(self) -> Location:
        return self.home / "tables"

    def report_dir(self, partition: str) -> Location:
        return self.home / "reports" / f"dataset={partition}"
