"""Every asset check of the code location, in one place: missing rows, blank or
constant images, NaN/inf values and tensors. Each runs per partition, after its asset."""


import warnings

import dagster as dg
import numpy as np
import torch

from evaluation.ingestion.files import StoreFault
from evaluation.ingestion.images import is_constant
from orchestration.assets import generations, metrics, triplets
from orchestration.cache import DiskCache, split_fields
from orchestration.di_assets import clip_deltas, diff_tokens
from orchestration.partitions import dataset_partitions
from orchestration.resources import AnalogyStorage
from orchestration.storage import Store
from orchestration.visii_assets import visii_instructions

# Partitioned checks are a Dagster "preview" feature; the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*partitions_def on an AssetCheckSpec.*")

ERROR = dg.AssetCheckSeverity.ERROR


def _result(problems: list[str], checked: int, severity=ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems, severity=severity,
        metadata={"checked": checked, "problems": len(problems), "first_problems": "\n".join(problems[:20])},
        description=f"{len(problems)} problem(s) in {checked} checked" if problems else f"{checked} checked, all good",
    )


def image_problems(store: Store, digest: str, label: str) -> list[str]:
    """A stored image that is missing, unreadable, blank/constant or not finite."""
    path = store.png_path(digest)
    if not path.exists():
        return [f"{label}: blob {path.name} is missing"]
    try:
        image = store.get_png(digest)
    except StoreFault:  # the store or the disk, not the image
        raise
    except Exception as exc:
        return [f"{label}: blob {path.name} is unreadable ({exc})"]
    if not np.isfinite(np.asarray(image, dtype=np.float32)).all():
        return [f"{label}: non-finite pixels"]
    return [f"{label}: blank or constant image"] if is_constant(image) else []


def tensor_problems(tensors: dict[str, torch.Tensor], label: str) -> list[str]:
    """NaN/inf entries in a dict of tensors (a safetensors blob)."""
    return [f"{label}: {name} has {int((~torch.isfinite(t)).sum())} NaN/inf values"
            for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]


@dg.asset_check(asset=triplets, partitions_def=dataset_partitions)
def triplets_not_empty(context: dg.AssetCheckExecutionContext, storage: AnalogyStorage) -> dg.AssetCheckResult:
    """The partition has triplets, ids are unique, and at least one triplet is usable."""
    rows = storage.store().read_table("triplets", context.partition_key)
    ids = [r["triplet_id"] for r in rows]
    problems = [f"triplet_id {i!r} appears {ids.count(i)} times" for i in sorted(set(ids)) if ids.count(i) > 1]
    if not rows:
        problems.append("no triplets in the partition")
    elif all(r["error"] for r in rows):
        problems.append(f"all {len(rows)} triplets are unusable, e.g. {rows[0]['error']}")
    return _result(problems, len(rows))


@dg.asset_check(asset=triplets, partitions_def=dataset_partitions)
def triplet_images_valid(context: dg.AssetCheckExecutionContext, storage: AnalogyStorage) -> dg.AssetCheckResult:
    """Every stored input image exists and is not blank or constant (warning: inputs may legitimately be plain)."""
    store = storage.store()
    rows = [r for r in store.read_table("triplets", context.partition_key) if not r["error"]]
    problems = [p for r in rows for role in ("a", "a_prime", "b", "b_prime_gt") if r[f"{role}_hash"]
                for p in image_problems(store, r[f"{role}_hash"], f"{r['triplet_id']} {role}")]
    return _result(problems, len(rows), severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=generations, partitions_def=dataset_partitions)
def generations_complete(context: dg.AssetCheckExecutionContext, storage: AnalogyStorage) -> dg.AssetCheckResult:
    """Every usable triplet has a row for every method that ran, and no method failed everywhere."""
    store = storage.store()
    usable = {r["triplet_id"] for r in store.read_table("triplets", context.partition_key) if not r["error"]}
    rows = store.read_table("generations", context.partition_key)
    problems = []
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        missing = usable - {r["triplet_id"] for r in mine}
        if missing:
            problems.append(f"{method}: no row for {len(missing)} triplet(s), e.g. {sorted(missing)[0]}")
        if mine and all(r["error"] for r in mine):
            problems.append(f"{method}: failed on every triplet, e.g. {mine[0]['error']}")
    if usable and not rows:
        problems.append("no generations for a partition with usable triplets")
    return _result(problems, len(rows))


@dg.asset_check(asset=generations, partitions_def=dataset_partitions)
def b_prime_images_valid(context: dg.AssetCheckExecutionContext, storage: AnalogyStorage) -> dg.AssetCheckResult:
    """Every generated B′ exists, is readable and is not blank or constant."""
    store = storage.store()
    rows = [r for r in store.read_table("generations", context.partition_key) if not r["error"]]
    problems = [p for r in rows
                for p in image_problems(store, r["b_prime_hash"], f"{r['method']} {r['triplet_id']} B′")]
    return _result(problems, len(rows))


@dg.asset_check(asset=metrics, partitions_def=dataset_partitions)
def metrics_finite_and_complete(context: dg.AssetCheckExecutionContext,
                                storage: AnalogyStorage) -> dg.AssetCheckResult:
    """No NaN/inf scores, and every successful generation has scores."""
    store = storage.store()
    rows = store.read_table("metrics", context.partition_key)
    problems = [f"{r['method']} {r['triplet_id']} {r['metric']} = {r['value']}" for r in rows
                if r["value"] is None or not np.isfinite(r["value"])]
    scored = {(r["triplet_id"], r["method"]) for r in rows}
    unscored = [(g["triplet_id"], g["method"]) for g in store.read_table("generations", context.partition_key)
                if not g["error"] and (g["triplet_id"], g["method"]) not in scored]
    if unscored:
        problems.append(f"{len(unscored)} generation(s) without scores, e.g. {unscored[0]}")
    return _result(problems, len(rows))


def cached_tensors_finite_check(asset: dg.AssetsDefinition, table: str, column: str,
                                kind: str) -> dg.AssetChecksDefinition:
    """A check that every cache entry named in `table.column` (blobs/cache/<kind>/) exists and
    holds no NaN/inf tensor."""

    @dg.asset_check(asset=asset, name=f"{column}_finite", partitions_def=dataset_partitions,
                    description=f"every cached tensor named in {table}.{column} exists and is finite")
    def _check(context: dg.AssetCheckExecutionContext, storage: AnalogyStorage) -> dg.AssetCheckResult:
        store = storage.store()
        cache = DiskCache(store)
        digests = [r[column] for r in store.read_table(table, context.partition_key) if r.get(column)]
        problems = []
        for digest in digests:
            value = cache.load(kind, digest)
            if value is None:
                problems.append(f"{digest[:12]}: cache entry missing")
            else:
                problems += tensor_problems(split_fields(value)[0], digest[:12])
        return _result(problems, len(digests))

    return _check


CHECKS = [triplets_not_empty, triplet_images_valid, generations_complete, b_prime_images_valid,
          metrics_finite_and_complete,
          cached_tensors_finite_check(diff_tokens, "diff_tokens", "tokens_key", "diff_tokens"),
          cached_tensors_finite_check(clip_deltas, "clip_deltas", "deltas_key", "clip_deltas"),
          cached_tensors_finite_check(visii_instructions, "visii_instructions", "instruction_key", "visii_instruction")]
