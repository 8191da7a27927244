"""What every asset tells Dagster: code versions, owners and tags, and the standard metadata keys.

Code versions. An asset's code version is a digest of what decides its output besides its
inputs: the schema of the table it writes and, for the assets that run methods, every
registered method's default config and every profile's method defaults. Change a default (or
a table's columns) and the UI marks that asset and everything downstream stale; rerunning an
unchanged graph leaves nothing stale.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import warnings
from typing import Any

import dagster as dg
import pyarrow as pa

from evaluation.schemas import TABLES
from ops.cache import config_hash

OWNERS = ["team:analogy"]

BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
# `backfill_policy` is a beta parameter of @dg.asset in Dagster 1.13; the policy used here (one
# partition per run, Dagster's own default for a backfill) is the stable part of it.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


def asset_args(table: str | None, stage: str, *, runs_methods: bool = False, gpu: bool = False,
               partitioned: bool = True, extra: Any = None) -> dict[str, Any]:
    """The arguments every asset of the project gives `@dg.asset`: owners, tags, the code version;
    for a per-dataset asset its partitions and backfill policy (a backfill runs one partition per
    run: each asset reads one `partition_key`); for one that loads a model, the `gpu` pool and the
    execution tags that give its step a whole accelerator on Kubernetes and Dask
    (orchestration.executors.GPU_OP_TAGS)."""
    from orchestration.executors import GPU_OP_TAGS
    from orchestration.partitions import dataset_partitions

    args: dict[str, Any] = {"owners": OWNERS, "tags": {"stage": stage, **({"compute": "gpu"} if gpu else {})},
                            "code_version": code_version(table, runs_methods=runs_methods, extra=extra)}
    if partitioned:
        args |= {"partitions_def": dataset_partitions, "backfill_policy": BACKFILL}
    if gpu:
        args |= {"pool": "gpu", "op_tags": GPU_OP_TAGS}
    return args


def method_defaults() -> dict[str, Any]:
    """Every registered method's class default config and preset, and every profile's overrides."""
    from models.profiles import PROFILES
    from ops.registry import METHODS

    methods = {name: {"config": dataclasses.asdict(m.config_class()), "preset": m.preset}
               for name, m in sorted(METHODS.items())}
    profiles = {name: {cls: dict(sorted(v.items())) for cls, v in sorted(p.method_defaults.items())}
                for name, p in sorted(PROFILES.items())}
    return {"methods": methods, "profiles": profiles}


def code_version(table: str | None, *, runs_methods: bool = False, extra: Any = None) -> str:
    """The code version of an asset that writes `table` (None: writes no table)."""
    parts: dict[str, Any] = {"schema": str(TABLES[table]) if table else None, "extra": extra}
    if runs_methods:
        parts["methods"] = method_defaults()
    return config_hash(parts)[:16]


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type),
                                                  constraints=dg.TableColumnConstraints(nullable=f.nullable))
                                   for f in schema])


def table_metadata(path, rows: list[dict], table: str) -> dict[str, Any]:
    """The standard keys (row count, column schema, where the file is) plus the error count."""
    return {"dagster/row_count": len(rows), "dagster/column_schema": column_schema(TABLES[table]),
            "dagster/uri": str(path), "path": dg.MetadataValue.path(str(path)),
            "errors": sum(1 for r in rows if r.get("error"))}


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """An image shown inline in the UI's metadata panel."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def records_table(columns: list[str], rows: list[tuple], types: dict[str, str] | None = None) -> dg.MetadataValue:
    """Rows as a Dagster table (sortable in the UI), floats rounded to 4 digits."""
    types = types or {}
    schema = dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "string")) for c in columns])
    fmt = lambda v: round(v, 4) if isinstance(v, float) else v  # noqa: E731
    return dg.MetadataValue.table(records=[dg.TableRecord({c: fmt(v) for c, v in zip(columns, row)}) for row in rows],
                                  schema=schema)


def json_value(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
