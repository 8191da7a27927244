"""The embedded storage layout under `$ANALOGY_HOME` (default `./.analogy`):

    tables/<table>/dataset=<partition>/part-0.parquet   one schema per table (evaluation.schemas)
    blobs/png/<image hash>.png                          images, named by their pixels (ops.cache.image_hash)
    blobs/cache/<kind>/<key>.<ext>                      method intermediates (orchestration.cache)
    analogy.duckdb                                      views over tables/
    reports/dataset=<partition>/                        HTML gallery and plots
    dagster/                                            DAGSTER_HOME for the CLI's runs

Every write goes to a temporary name in the target folder and is renamed into
place, so a reader never sees half a file and a re-run replaces, never appends.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from evaluation.files import atomic_write
from evaluation.images import png_bytes
from evaluation.schemas import TABLES
from ops.cache import image_hash

DEFAULT_HOME = "./.analogy"


def analogy_home(home: str | Path | None = None) -> Path:
    """`home`, else `$ANALOGY_HOME`, else `./.analogy`, as an absolute path."""
    return Path(home or os.environ.get("ANALOGY_HOME") or DEFAULT_HOME).expanduser().resolve()


class Store:
    """Reads and writes tables and blobs under one `$ANALOGY_HOME`."""

    def __init__(self, home: str | Path | None = None):
        self.home = analogy_home(home)

    # --- tables -----------------------------------------------------------------
    def partition_dir(self, table: str, partition: str) -> Path:
        return self.home / "tables" / table / f"dataset={partition}"

    def table_path(self, table: str, partition: str) -> Path:
        return self.partition_dir(table, partition) / "part-0.parquet"

    def write_table(self, table: str, partition: str, rows: list[dict]) -> Path:
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
        return pq.read_table(path, schema=TABLES[table]).to_pylist()

    def previous_rows(self, table: str, partition: str) -> list[dict]:
        """The partition's rows from an earlier run, or [] where there is none or it was written
        with other columns (an older version: its rows are recomputed, not misread)."""
        path = self.table_path(table, partition)
        if not path.exists() or pq.read_schema(path).remove_metadata() != TABLES[table].remove_metadata():
            return []
        return self.read_table(table, partition)

    def tables_with_files(self) -> list[str]:
        root = self.home / "tables"
        return sorted(p.name for p in root.iterdir() if any(p.glob("*/*.parquet"))) if root.exists() else []

    # --- blobs ------------------------------------------------------------------
    def blob_path(self, kind: str, digest: str, ext: str) -> Path:
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

    def png_path(self, digest: str) -> Path:
        return self.blob_path("png", digest, "png")

    def get_png(self, digest: str) -> Image.Image:
        with Image.open(self.png_path(digest)) as image:
            return image.convert("RGB")

    def put_tensors(self, tensors: dict[str, torch.Tensor]) -> str:
        data = save_safetensors({k: v.contiguous() for k, v in tensors.items()})
        return self.put_blob("tensors", data, "safetensors")

    def get_tensors(self, digest: str) -> dict[str, torch.Tensor]:
        return load_safetensors(self.blob_path("tensors", digest, "safetensors").read_bytes())

    # --- other places -----------------------------------------------------------
    @property
    def duckdb_path(self) -> Path:
        return self.home / "analogy.duckdb"

    def report_dir(self, partition: str) -> Path:
        return self.home / "reports" / f"dataset={partition}"
