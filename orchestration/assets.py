"""The asset graph, one dataset partition at a time:

    triplets → generations → metrics → leaderboard (DuckDB views, all partitions)
                                      └→ report (HTML gallery + plot, per partition)

Each asset reads its inputs from the store, calls one function from ops/ or
evaluation/, writes a table (or files) and returns metadata for the UI.
Difference Inversion's stages (captions, pez_prompts, clip_deltas, diff_tokens;
orchestration/di_assets.py) slot in between triplets and generations; new methods
only need `ops.registry`.
"""


import base64
import json
from functools import lru_cache
from typing import Any

import dagster as dg

from evaluation import report as report_lib
from evaluation.datasets import load_raw_triplets, resolve_partition
from evaluation.files import atomic_write
from evaluation.judge_scores import judge_rows
from evaluation.metrics import items_from_tables, score_items
from evaluation.schemas import TABLES, describe
from evaluation.triplets import triplet_row
from evaluation.views import build_database, query
from ops.registry import config_json
from orchestration.cache import DiskCache
from orchestration.di_assets import diff_tokens
from orchestration.generate import generate_rows
from orchestration.partitions import dataset_partitions, datasets
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource

GROUP = "analogy"


def _table_metadata(path, rows: list[dict], table: str) -> dict[str, Any]:
    errors = sum(1 for r in rows if r.get("error"))
    return {"path": dg.MetadataValue.path(str(path)), "rows": len(rows), "errors": errors,
            "schema": dg.MetadataValue.json(describe(TABLES[table]))}


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, kinds={"parquet"})
def triplets(context: dg.AssetExecutionContext, storage: AnalogyStorage) -> dg.MaterializeResult:
    """A, A′, B (and B′gt) of every triplet in the partition, validated: repairs are
    noted, unusable triplets become error rows."""
    store = storage.store()
    spec, rows_slice = resolve_partition(datasets(), context.partition_key)
    raw = load_raw_triplets(spec, rows_slice, cache_dir=store.home / "datasets")
    rows = [triplet_row(t, spec.kind, store.put_png) for t in raw]
    for row in rows:
        if row["error"]:
            context.log.warning(f"triplet {row['triplet_id']} unusable: {row['error']}")
        elif row["notes"]:
            context.log.info(f"triplet {row['triplet_id']} repaired: {'; '.join(json.loads(row['notes']))}")
    path = store.write_table("triplets", context.partition_key, rows)
    return dg.MaterializeResult(metadata={**_table_metadata(path, rows, "triplets"), "kind": spec.kind})


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=[triplets, diff_tokens], pool="gpu",
          kinds={"parquet"})
def generations(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                methods: MethodsResource) -> dg.MaterializeResult:
    """B′ for every usable triplet × method of the run (the `methods` resource), as PNG blobs. Method
    intermediates come from the on-disk cache the DI assets filled (D̃, prompts) or fill it (DIA)."""
    store = storage.store()
    loaded = models.models()
    runs = methods.runs(loaded.profile)
    cache = DiskCache(store)
    rows = generate_rows(store.read_table("triplets", context.partition_key), runs, store, loaded, cache,
                         methods.seed, context.log)
    path = store.write_table("generations", context.partition_key, rows)
    context.log.info(f"generations: cache {json.dumps(cache.stats)}")
    return dg.MaterializeResult(metadata={**_table_metadata(path, rows, "generations"),
                                          "methods": ", ".join(r.label for r in runs), "profile": models.profile,
                                          "configs": dg.MetadataValue.json({r.label: json.loads(config_json(r.config))
                                                                            for r in runs}),
                                          "cache": dg.MetadataValue.json(cache.stats)})


class MetricsConfig(dg.Config):
    encoders: list[str] = ["clip", "dinov2"]  # image encoders for directional scores; absent ones are skipped
    text_direction: bool = True  # caption-based CLIP direction where the dataset has captions


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=[generations], pool="gpu", kinds={"parquet"})
def metrics(context: dg.AssetExecutionContext, config: MetricsConfig, storage: AnalogyStorage,
            models: ModelsResource) -> dg.MaterializeResult:
    """Directional, caption-direction and ground-truth scores of every B′ (long format)."""
    store = storage.store()
    key = context.partition_key
    triplets_rows, generation_rows = store.read_table("triplets", key), store.read_table("generations", key)
    items = items_from_tables(triplets_rows, generation_rows)
    encoders = {}
    for kind in config.encoders:
        try:
            encoders[kind] = models.image_encoder(kind)
        except ValueError as exc:  # e.g. no DINOv2 in the toy profile
            context.log.info(f"skipping encoder {kind!r}: {exc}")
    text_encoder = models.text_encoder() if config.text_direction and "clip" in encoders else None
    load = lru_cache(maxsize=4096)(store.get_png)
    rows = score_items(items, load, encoders, text_encoder)
    if models.get_profile().judge is not None:  # toy ground truth: attributes read off B′ by the judge CLIP
        rows += judge_rows(triplets_rows, generation_rows, models.judge(), load)
    path = store.write_table("metrics", key, rows)
    return dg.MaterializeResult(metadata={**_table_metadata(path, rows, "metrics"),
                                          "encoders": ", ".join(f"{k}={e.model_id}" for k, e in encoders.items()),
                                          "metric_names": ", ".join(sorted({r["metric"] for r in rows}))})


@dg.asset(group_name=GROUP, deps=[metrics], kinds={"duckdb"})
def leaderboard(context: dg.AssetExecutionContext, storage: AnalogyStorage) -> dg.MaterializeResult:
    """Refreshes analogy.duckdb (a view per table, over every partition of every dataset) whose
    `leaderboard` view is mean ± 95% CI per method × dataset × metric."""
    store = storage.store()
    views = build_database(store.duckdb_path, store.home / "tables", store.tables_with_files())
    metadata: dict[str, Any] = {"path": dg.MetadataValue.path(str(store.duckdb_path)), "views": ", ".join(views)}
    if "leaderboard" in views:
        columns, rows = query(store.duckdb_path, "SELECT dataset, method, metric, n, mean, ci95 FROM leaderboard")
        metadata["leaderboard"] = dg.MetadataValue.md(_markdown(columns, rows))
        metadata["rows"] = len(rows)
        context.log.info(f"leaderboard: {len(rows)} rows over views {', '.join(views)}")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=[metrics], kinds={"html"})
def report(context: dg.AssetExecutionContext, storage: AnalogyStorage) -> dg.MaterializeResult:
    """HTML gallery (A | A′ | B | B′ per method, with scores) and a scores plot."""
    store = storage.store()
    key = context.partition_key
    out_dir = store.report_dir(key)
    href = lambda h: f"../../blobs/png/{h}.png" if h else None  # noqa: E731 (report → blobs, relative)
    metric_rows = store.read_table("metrics", key)
    gallery = report_lib.build_gallery(store.read_table("triplets", key), store.read_table("generations", key),
                                       metric_rows, href)
    summary = report_lib.summarise(metric_rows)
    summary_md = report_lib.summary_markdown(summary)
    plot = report_lib.scores_plot(summary)
    plot_path = out_dir / "scores.png"
    html_path = out_dir / "index.html"
    atomic_write(plot_path, plot)
    page = report_lib.gallery_html(f"Image analogies — {key}", gallery, summary_md, "scores.png")
    atomic_write(html_path, page.encode())
    context.log.info(f"report: {html_path}")
    plot_md = f"![scores](data:image/png;base64,{base64.b64encode(plot).decode()})"
    return dg.MaterializeResult(metadata={
        "html": dg.MetadataValue.path(str(html_path)),
        "plot": dg.MetadataValue.path(str(plot_path)),
        "summary": dg.MetadataValue.md(summary_md + "\n\n" + plot_md),
    })


def _markdown(columns: list[str], rows: list[tuple]) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows])


ASSETS = [triplets, generations, metrics, leaderboard, report]
