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
import io
import json
import time
import warnings
from typing import Any

import dagster as dg
import pyarrow as pa

from evaluation.ingestion.files import StoreFault
from evaluation.presentation.schemas import TABLES
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


def column_types(types: dict[str, pa.DataType]) -> dict[str, str]:
    """A table's Arrow column types as the UI's table types (`records_table`), so numbers sort as numbers."""
    def kind(t: pa.DataType) -> str:
        return ("float" if pa.types.is_floating(t) else "int" if pa.types.is_integer(t)
                else "bool" if pa.types.is_boolean(t) else "string")

    return {column: kind(t) for column, t in types.items()}


def win_rate_table(rates: list[dict], with_dataset: bool = False) -> dg.MetadataValue:
    """Win rates (evaluation.scoring.pairwise) as a UI table narrow enough to read: the rate and its interval in
    one column, wins-losses-ties in another."""
    columns = [*(["dataset"] if with_dataset else []), "method", "opponent", "win rate [95% CI]", "W-L-T",
               "inconsistent", "failed"]
    body = [(*([r["dataset"]] if with_dataset else []), r["method"], r["opponent"],
             "—" if r["win_rate"] is None else f"{r['win_rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]",
             f"{r['wins']}-{r['losses']}-{r['ties']}", r["inconsistent"], r["failed"]) for r in rates]
    return records_table(columns, body, {"inconsistent": "int", "failed": "int"})


def json_value(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))


# ----------------------------------------------------------------------------- method intermediates' tables


def method_inputs(context, storage, models, methods, fn):
    """What a method intermediate's asset starts from: (the store, the loaded models, the disk cache, the
    partition's usable triplets, the run's variants of the method whose function is `fn`: label → config)."""
    from orchestration.cache import DiskCache

    store = storage.store()
    loaded = models.models()
    variants = {r.label: r.config for r in methods.runs(loaded.profile) if r.method.fn is fn}
    usable = [t for t in store.read_table("triplets", context.partition_key) if not t["error"]]
    return store, loaded, DiskCache(store), usable, variants


def prepared_table(context, storage, models, methods, fn, prepare, record, *, table: str, result: str, what: str,
                   curve_panels: dict[str, str]) -> dg.MaterializeResult:
    """The one prepare loop of every method that prepares something per example pair (DI's D̃, VISII's
    instruction): its `prepare` hook (ops.registry) on every distinct (A, A′) of the partition, per variant
    of the run's method whose function is `fn`, `methods.batch_size` pairs at a time, the pairs' images
    read once. One `table` row per pair × variant: `record(loaded, a, a_prime, config, seed, made)`'s
    columns with the cost (seconds per pair, peak memory), or the pair's error; written by
    `write_intermediate`, `result` naming the column of what a row made."""
    from orchestration.peak_memory import PeakMemory

    store, loaded, cache, usable, variants = method_inputs(context, storage, models, methods, fn)
    pairs = distinct_rows(usable, "a", "a_prime")
    images = [(store.get_png(a_hash), store.get_png(ap_hash)) for a_hash, ap_hash in pairs] if variants else []
    rows = []
    for variant, config in variants.items():
        start = time.perf_counter()
        with PeakMemory(loaded.device) as peak:
            made = prepare(loaded, images, config, seed=methods.seed, cache=cache, batch_size=methods.batch_size)
        cost = {"seconds": (time.perf_counter() - start) / max(1, len(pairs)), "peak_memory_mb": peak.mb}
        context.log.info(f"[{variant}] {what} for {len(pairs)} pair(s), batches of {methods.batch_size}, "
                         f"{cost['seconds']:.1f} s per pair")
        for (a_hash, ap_hash), (a, a_prime), one in zip(pairs, images, made, strict=True):
            row = dict.fromkeys(TABLES[table].names) | {"a_hash": a_hash, "a_prime_hash": ap_hash, "variant": variant,
                                                        "config": json.dumps(dataclasses.asdict(config))}
            if isinstance(one, Exception):  # a pair whose inputs or training fail is an error row
                row["error"] = f"{type(one).__name__}: {one}"
            else:
                row.update(record(loaded, a, a_prime, config, methods.seed, one), **cost)
            rows.append(row)
    return write_intermediate(store, context, cache, table, rows, usable, ("a_hash", "a_prime_hash", "variant"),
                              result=result, curve_panels=curve_panels, batch_size=methods.batch_size)


def distinct_rows(rows: list[dict], *roles: str) -> list[tuple[str, ...]]:
    """The distinct image-hash tuples of `rows` for `roles` (("a", "a_prime"): the (A, A′) pairs), sorted."""
    return sorted({tuple(r[f"{role}_hash"] for role in roles) for r in rows})


def attempt(row: dict, fn) -> dict:
    """Fill `row` from fn(); an exception becomes the row's error (one bad input fails alone)."""
    try:
        row.update(fn())
    except StoreFault:  # the store or the disk, not this input: the step fails, a re-run resumes
        raise
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def write_intermediate(store, context, cache, table: str, rows: list[dict], usable: list[dict],
                       key: tuple[str, ...], result: str | None = None, curve_panels: dict[str, str] | None = None,
                       **metadata) -> dg.MaterializeResult:
    """A method intermediate's table (DI's, VISII's): `rows` written beside the rows of earlier runs
    that this run did not recompute (same `key` columns) and whose images are still in the partition,
    so a run without the method, or with another variant of it, keeps what earlier runs made.
    `result`: the column naming what a row made (its cache key); a row that found the same result as
    the earlier run's row (read from the cache) keeps that row's cost (seconds, peak memory), the cost of
    making it. `curve_panels`: the mean training curve of every row of the partition, kept ones included."""
    hashes = {t[f"{role}_hash"] for t in usable for role in ("a", "a_prime", "b")}
    redone = {tuple(r[k] for k in key) for r in rows}
    previous = store.previous_rows(table, context.partition_key)
    kept = [r for r in previous
            if tuple(r[k] for k in key) not in redone and all(r[k] in hashes for k in key if k.endswith("_hash"))]
    if result:
        earlier = {tuple(r[k] for k in key): r for r in previous if r[result] and r["seconds"] is not None}
        for r in rows:
            before = earlier.get(tuple(r[k] for k in key))
            if before is not None and r[result] == before[result]:
                r.update(seconds=before["seconds"], peak_memory_mb=before["peak_memory_mb"])
    path = store.write_table(table, context.partition_key, kept + rows)
    for r in rows:
        if r.get("error"):
            context.log.warning(f"{table}: {r['error']}")
    context.log.info(f"{table}: cache {json.dumps(cache.stats)}")
    if curve_panels:
        curves = [json.loads(r["curve"]) for r in kept + rows if r.get("curve")]
        if curves:
            metadata["loss_curve"] = png_markdown(curves_png(curves, curve_panels), "training curves")
    return dg.MaterializeResult(metadata={**table_metadata(path, kept + rows, table), "partition":
                                          context.partition_key, "computed": len(rows),
                                          "kept from earlier runs": len(kept),
                                          "made here": sum(1 for r in rows if not r.get("error")),
                                          **({"cache": json_value(cache.stats)} if cache.stats else {}),
                                          **metadata})


def curves_png(curves: list[dict[str, list[float]]], titles: dict[str, str]) -> bytes:
    """The mean of many training curves, one panel per `titles` key ({key: title}), as PNG bytes
    (curves of unequal length are cut to the shortest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(titles), figsize=(3.4 * len(titles), 2.6), squeeze=False)
    for ax, (key, title) in zip(axes[0], titles.items()):
        series = [c[key] for c in curves if c.get(key)]
        if series:
            length = min(len(s) for s in series)
            ax.plot(np.mean([s[:length] for s in series], axis=0))
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()
