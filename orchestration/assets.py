"""The asset graph, one dataset partition at a time:

    triplets → generations → metrics → leaderboard (DuckDB views, all partitions)
                                      └→ report (HTML gallery + plot, per partition)

Each asset reads its inputs from the store, calls one function from ops/ or
evaluation/, writes a table (or files) and returns metadata for the UI.
Difference Inversion's stages (captions, pez_prompts, clip_deltas, diff_tokens;
orchestration/di_assets.py) and VISII's (visii_instructions; orchestration/visii_assets.py)
slot in between triplets and generations; other methods only need `ops.registry`.
"""


import json
import os
from functools import lru_cache
from typing import Any

import dagster as dg
from pydantic import Field, field_validator

from evaluation.ingestion.datasets import load_raw_triplets, resolve_partition
from evaluation.ingestion.files import atomic_write
from evaluation.ingestion.triplets import triplet_row
from evaluation.presentation import report as report_lib
from evaluation.presentation.views import COMPUTED_TABLES, build_database, partition_verdict
from evaluation.scoring.cost import cost_rows
from evaluation.scoring.judge_scores import judge_rows
from evaluation.scoring.metrics import items_from_tables, score_items
from evaluation.scoring.pairwise import ALL
from models.loaders import IMAGE_ENCODER_KINDS
from ops.registry import config_json
from orchestration.cache import DiskCache
from orchestration.di_assets import diff_tokens
from orchestration.generate import generate_rows
from orchestration.metadata import (
    asset_args,
    column_types,
    json_value,
    png_markdown,
    records_table,
    table_metadata,
    win_rate_table,
)
from orchestration.partitions import datasets
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource
from orchestration.visii_assets import visii_instructions

GROUP = "analogy"

@dg.asset(group_name=GROUP, kinds={"parquet"}, **asset_args("triplets", "ingest"))
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
    return dg.MaterializeResult(metadata={**table_metadata(path, rows, "triplets"), "kind": spec.kind,
                                          "partition": context.partition_key})


@dg.asset(group_name=GROUP, deps=[triplets, diff_tokens, visii_instructions], kinds={"parquet"},
          **asset_args("generations", "generate", runs_methods=True, gpu=True))
def generations(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                methods: MethodsResource) -> dg.MaterializeResult:
    """B′ for every usable triplet × method of the run (the `methods` resource), as PNG blobs, added to
    the partition's table: other methods' rows are kept and a B′ already made with the same inputs,
    config, seed and profile is reused (orchestration.generate), so a new method runs alone. Method
    intermediates come from the on-disk cache the DI and VISII assets filled (D̃, prompts, learned
    instructions) or fill it (DIA)."""
    store = storage.store()
    key = context.partition_key
    loaded = models.models()
    runs = methods.runs(loaded.profile)
    cache = DiskCache(store)
    triplet_rows = store.read_table("triplets", key)
    rows, counts = generate_rows(triplet_rows, runs, store, loaded, cache, methods.seed, context.log,
                                 previous=store.previous_rows("generations", key), run_id=context.run_id)
    path = store.write_table("generations", key, rows)
    context.log.info(f"generations: {json.dumps(counts)}; cache {json.dumps(cache.stats)}")
    lookup = lru_cache(maxsize=1024)(store.get_png)
    grid = report_lib.sample_grid(triplet_rows, [r for r in rows if r["b_prime_hash"]], lookup)
    return dg.MaterializeResult(metadata={**table_metadata(path, rows, "generations"), "partition": key,
                                          "methods": ", ".join(r.label for r in runs), "profile": models.profile,
                                          "computed": counts["computed"], "reused": counts["reused"],
                                          "kept from earlier runs": counts["kept"],
                                          "configs": json_value({r.label: json.loads(config_json(r.config))
                                                                 for r in runs}),
                                          "cache": json_value(cache.stats),
                                          "samples": png_markdown(grid, "B′ samples")})


class MetricsConfig(dg.Config):
    encoders: list[str] = Field(default=list(IMAGE_ENCODER_KINDS),
                                description="image encoders for the directional scores (clip, dinov2); one the "
                                            "profile lacks (no DINOv2 in the toy world) is skipped")
    text_direction: bool = Field(default=True, description="the caption-based CLIP direction, where the dataset "
                                                            "has captions")

    @field_validator("encoders")
    @classmethod
    def _known(cls, encoders: list[str]) -> list[str]:
        unknown = sorted(set(encoders) - set(IMAGE_ENCODER_KINDS))
        if unknown:  # a typo fails before any work, not as a silently skipped encoder
            raise ValueError(f"unknown image encoder {unknown[0]!r}; choose from {', '.join(IMAGE_ENCODER_KINDS)}")
        return encoders


@dg.asset(group_name=GROUP, deps=[generations], kinds={"parquet"}, **asset_args("metrics", "evaluate", gpu=True))
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
    prepared = [r for table in ("diff_tokens", "visii_instructions") for r in store.previous_rows(table, key)]
    rows += cost_rows(triplets_rows, generation_rows, prepared)
    path = store.write_table("metrics", key, rows)
    return dg.MaterializeResult(metadata={**table_metadata(path, rows, "metrics"), "partition": key,
                                          "encoders": ", ".join(f"{k}={e.model_id}" for k, e in encoders.items()),
                                          "metric_names": ", ".join(sorted({r["metric"] for r in rows}))})


@dg.asset(group_name=GROUP, deps=[metrics, "judgements"], kinds={"duckdb"},
          **asset_args(None, "evaluate", partitioned=False))
def leaderboard(context: dg.AssetExecutionContext, storage: AnalogyStorage) -> dg.MaterializeResult:
    """Refreshes analogy.duckdb (a view per table, over every partition of every dataset) and the verdict
    computed from it (evaluation.presentation.views): `leaderboard` (mean and 95 % interval per dataset × category ×
    method × config × metric, cost included), `win_rates`, `rankings`, `judge_quality`, `judge_agreement`."""
    store = storage.store()
    views = build_database(store.duckdb_path, store.tables_root, store.tables_with_files())
    overall = lambda table: [r for r in views[table] if r["category"] == ALL]  # noqa: E731
    board = sorted(overall("leaderboard"), key=lambda r: (r["dataset"], r["metric"], r["privileged"], -r["mean"]))
    columns = ["dataset", "method", "metric", "privileged", "n", "mean", "ci95_low", "ci95_high"]
    quality = list(COMPUTED_TABLES["judge_quality"].types)
    metadata: dict[str, Any] = {
        "path": dg.MetadataValue.path(str(store.duckdb_path)), "views": ", ".join(views),
        "dagster/row_count": len(views["leaderboard"]),
        "rankings": ranking_table(sorted(overall("rankings"), key=lambda r: (r["dataset"], r["judge"],
                                                                            r["pool"] != "example_only", r["rank"],
                                                                            r["method"])), with_dataset=True),
        "leaderboard": records_table(columns, [tuple(r[c] for c in columns) for r in board], NUMBER_TYPES),
        "win_rates": win_rate_table(overall("win_rates"), with_dataset=True),
        "judge_quality": records_table(quality, [tuple(r[c] for c in quality) for r in views["judge_quality"]],
                                       column_types(COMPUTED_TABLES["judge_quality"].types))}
    context.log.info(f"leaderboard: {len(views['leaderboard'])} rows over views {', '.join(views)}")
    return dg.MaterializeResult(metadata=metadata)


NUMBER_TYPES = {"n": "int", "mean": "float", "ci95_low": "float", "ci95_high": "float", "privileged": "bool"}
RANKING_TYPES = {"rank": "int", "privileged": "bool", "strength": "float", "ci_low": "float", "ci_high": "float",
                 "mean win": "float"}


def ranking_table(rows: list[dict], with_dataset: bool = False) -> dg.MetadataValue:
    """Rankings (evaluation.scoring.ranking) as a UI table narrow enough for the metadata panel: the rank range in
    one column ("1–3"), the HELM mean win rate as "mean win"."""
    columns = [*(["dataset", "judge"] if with_dataset else []), "pool", "rank", "method", "privileged", "strength",
               "ci_low", "ci_high", "ranks", "mean win"]
    body = [(*([r["dataset"], r["judge"]] if with_dataset else []), r["pool"], r["rank"], r["method"], r["privileged"],
             r["strength"], r["ci_low"], r["ci_high"], f"{r['rank_low']}–{r['rank_high']}", r["mean_win_rate"])
            for r in rows]
    return records_table(columns, body, RANKING_TYPES)


DEFAULT_UI_URL = "http://localhost:3000"  # what `dagster dev` serves


class ReportConfig(dg.Config):
    ui_url: str = Field(default="", description="the address of your Dagster UI, for the report's links to runs; "
                                                f"empty: $ANALOGY_UI_URL, else {DEFAULT_UI_URL}")


@dg.asset(group_name=GROUP, deps=[metrics, "judgements"], kinds={"html"},
          **asset_args(None, "report", extra="report"))
def report(context: dg.AssetExecutionContext, config: ReportConfig, storage: AnalogyStorage) -> dg.MaterializeResult:
    """One self-contained HTML page of the partition's verdict (evaluation.presentation.report): the ranking with its
    intervals, the scores and cost per method, results per kind of edit, the judge's win rates and quality,
    and every triplet's B′ side by side; the same B′ grid and tables in the UI's metadata."""
    store = storage.store()
    key = context.partition_key
    out_dir = store.report_dir(key)
    href = lambda h: f"../../blobs/png/{h}.png" if h else None  # noqa: E731 (report → blobs, relative)
    triplet_rows = store.read_table("triplets", key)
    metric_rows = store.read_table("metrics", key)
    generation_rows = store.read_table("generations", key)
    verdict = partition_verdict(store.tables_root, store.tables_with_files(), key)
    overall = [r for r in verdict["leaderboard"] if r["category"] == ALL]
    plot = report_lib.scores_plot(overall)
    configs = {g["config_hash"]: {"method": g["method"], "config": json.loads(g["config"])} for g in generation_rows}
    ui = (config.ui_url or os.environ.get("ANALOGY_UI_URL") or DEFAULT_UI_URL).rstrip("/")
    gallery = report_lib.build_gallery(triplet_rows, generation_rows, metric_rows, href)
    page = report_lib.gallery_html(f"Image analogies — {key}", gallery, verdict, plot, configs,
                                   lambda run_id: f"{ui}/runs/{run_id}")
    html_path = out_dir / "index.html"
    atomic_write(out_dir / "scores.png", plot)
    atomic_write(html_path, page.encode())
    context.log.info(f"report: {html_path}")
    verdicts = report_lib.cell_verdicts(gallery, store.previous_rows("judgements", key))
    grid = report_lib.sample_grid(triplet_rows, [g for g in generation_rows if g["b_prime_hash"]],
                                  lru_cache(maxsize=1024)(store.get_png), verdicts=verdicts)
    ranking = [r for r in verdict["rankings"] if r["category"] == ALL]
    summary = [r for r in overall if r["metric"] in report_lib.HEADLINE_METRICS]
    return dg.MaterializeResult(metadata={
        "partition": key, "html": dg.MetadataValue.path(str(html_path)),
        "B′ grid": png_markdown(grid, "A, A′, B, B′gt and every method's B′, with the judge's verdict"),
        "ranking": ranking_table(ranking),
        "summary": records_table(["method", "metric", "privileged", "n", "mean", "ci95_low", "ci95_high"],
                                 [(r["method"], r["metric"], r["privileged"], r["n"], r["mean"], r["ci95_low"],
                                   r["ci95_high"]) for r in summary], NUMBER_TYPES),
        "plot": png_markdown(plot, "scores")})


ASSETS = [triplets, generations, metrics, leaderboard, report]
