"""One explicit pyarrow schema per table.

Tables live at `$ANALOGY_HOME/tables/<table>/dataset=<partition>/part-0.parquet`;
the `dataset` column comes from that directory name (hive partitioning), so it
is not stored in the files. Images are not stored in tables: a `*_hash` column
holds the sha256 of a PNG under `blobs/png/<hash>.png`.

Every table has an `error` column: a row whose `error` is set stands for a
triplet (or generation) that could not be used, with the reason, so one bad
input never fails a whole partition.
"""

from __future__ import annotations

import pyarrow as pa

TRIPLETS = pa.schema(
    [
        pa.field("triplet_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # dataset kind: toy, manifest, instructpix2pix, …
        pa.field("instruction", pa.string()),  # the edit in words, where the dataset has one
        pa.field("a_hash", pa.string()),
        pa.field("a_prime_hash", pa.string()),
        pa.field("b_hash", pa.string()),
        pa.field("b_prime_gt_hash", pa.string()),  # ground truth B′, where the dataset has one
        pa.field("a_caption", pa.string()),  # captions shipped with the dataset (not generated ones)
        pa.field("a_prime_caption", pa.string()),
        pa.field("b_caption", pa.string()),
        pa.field("b_prime_caption", pa.string()),
        pa.field("extra", pa.string()),  # JSON: dataset-specific fields (toy attributes, hub row ids, …)
        pa.field("notes", pa.string()),  # JSON list: repairs applied to the inputs
        pa.field("error", pa.string()),  # set ⇒ the triplet is unusable, with the reason
    ]
)

GENERATIONS = pa.schema(
    [
        pa.field("triplet_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("config", pa.string(), nullable=False),  # JSON of the method's resolved config
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("b_prime_hash", pa.string()),
        pa.field("seconds", pa.float64()),
        pa.field("error", pa.string()),
    ]
)

# Long format so new metrics (judge scores, VLM votes, …) add rows, not columns.
METRICS = pa.schema(
    [
        pa.field("triplet_id", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("model_id", pa.string()),  # the encoder or judge that produced the value
    ]
)

TABLES: dict[str, pa.Schema] = {"triplets": TRIPLETS, "generations": GENERATIONS, "metrics": METRICS}


def describe(schema: pa.Schema) -> dict[str, str]:
    """Column name → type, for asset metadata and docs."""
    return {f.name: str(f.type) for f in schema}
