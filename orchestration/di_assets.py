"""Difference Inversion's intermediates as assets, between triplets and generations:

    triplets → captions → pez_prompts ─┐
                       └→ clip_deltas ─┴→ diff_tokens → generations

Each asset runs one step of `ops.difference_inversion` for every Difference
Inversion method of the run (the `methods` resource) through the on-disk cache
(orchestration.cache), so `generations` — and any later run, partition or method
variant — finds these results instead of recomputing them. Rows are per distinct
image (captions, prompts) or per distinct (A, A′) pair × DI method (deltas, D̃),
so a second B costs nothing. Table schemas: evaluation/schemas.py.
"""


import io
import json
import time
from dataclasses import asdict

import dagster as dg

from ops import difference_inversion as di
from ops.cache import key_digest
from ops.captions import caption
from orchestration.cache import DiskCache
from orchestration.metadata import asset_args, json_value, png_markdown, table_metadata
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource

GROUP = "difference_inversion"


def _args(table: str) -> dict:
    return asset_args(table, "prepare", runs_methods=True, gpu=True)


def _inputs(context, storage: AnalogyStorage, models: ModelsResource, methods: MethodsResource):
    """The store, the models, the cache, the usable triplets and the run's DI methods (label → config)."""
    store = storage.store()
    loaded = models.models()
    variants = {r.label: r.config for r in methods.runs(loaded.profile) if r.method.fn is di.difference_inversion}
    usable = [t for t in store.read_table("triplets", context.partition_key) if not t["error"]] if variants else []
    return store, loaded, DiskCache(store), usable, variants


def _distinct(rows: list[dict], *roles: str) -> list[tuple[str, ...]]:
    return sorted({tuple(r[f"{role}_hash"] for role in roles) for r in rows})


def _attempt(row: dict, fn) -> dict:
    """Fill `row` from fn(); an exception becomes the row's error (one bad input fails alone)."""
    try:
        row.update(fn())
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _write(store, context, cache: DiskCache, table: str, rows: list[dict], usable: list[dict],
           key: tuple[str, ...], **metadata) -> dg.MaterializeResult:
    """Write `rows` beside the rows of earlier runs that this run did not recompute (same `key`
    columns) and whose images are still in the partition: a run without a DI method, or with
    another DI variant, keeps what earlier runs made."""
    hashes = {t[f"{role}_hash"] for t in usable for role in ("a", "a_prime", "b")}
    redone = {tuple(r[k] for k in key) for r in rows}
    kept = [r for r in store.previous_rows(table, context.partition_key)
            if tuple(r[k] for k in key) not in redone and all(r[k] in hashes for k in key if k.endswith("_hash"))]
    path = store.write_table(table, context.partition_key, kept + rows)
    for r in rows:
        if r.get("error"):
            context.log.warning(f"{table}: {r['error']}")
    context.log.info(f"{table}: cache {json.dumps(cache.stats)}")
    return dg.MaterializeResult(metadata={**table_metadata(path, kept + rows, table), "computed": len(rows),
                                          "kept from earlier runs": len(kept), "cache": json_value(cache.stats),
                                          **metadata})


@dg.asset(group_name=GROUP, deps=["triplets"], kinds={"parquet"}, **_args("captions"))
def captions(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
             methods: MethodsResource) -> dg.MaterializeResult:
    """A caption for every distinct A, A′ and B (BLIP-2, or retrieval in the toy world), when a
    Difference Inversion method is among the run's methods (else an empty table)."""
    store, loaded, cache, usable, _ = _inputs(context, storage, models, methods)
    hashes = sorted({h for t in usable for h in (t["a_hash"], t["a_prime_hash"], t["b_hash"])})
    rows = [_attempt({"image_hash": h, "captioner": None, "caption": None, "error": None},
                     lambda h=h: {"caption": caption(loaded, store.get_png(h), cache),
                                  "captioner": loaded.captioner.model_id}) for h in hashes]
    return _write(store, context, cache, "captions", rows, usable, ("image_hash",))


@dg.asset(group_name=GROUP, deps=[captions], kinds={"parquet"}, **_args("pez_prompts"))
def pez_prompts(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                methods: MethodsResource) -> dg.MaterializeResult:
    """Hard prompts (token ids, text, cosine) of every distinct image, per DI method's prompt settings."""
    store, loaded, cache, usable, variants = _inputs(context, storage, models, methods)
    hashes = sorted({h for t in usable for h in (t["a_hash"], t["a_prime_hash"], t["b_hash"])})
    rows = []
    for variant, config in variants.items():  # PEZ prompts optimised `batch_size` images at a time
        found = di.prompts(loaded, [store.get_png(h) for h in hashes], config, methods.seed, cache,
                           methods.batch_size)
        for h, p in zip(hashes, found):
            row = {"image_hash": h, "variant": variant, "clip": None, "prompt_source": config.prompt_source,
                   "token_ids": None, "text": None, "cosine": None, "error": None}
            if isinstance(p, Exception):
                row["error"] = f"{type(p).__name__}: {p}"
            else:
                row.update({"token_ids": p.token_ids, "text": p.text, "cosine": p.cosine,
                            "clip": loaded.joint_clip.model_id})
            rows.append(row)
        context.log.info(f"[{variant}] prompts of {len(hashes)} image(s) ({config.prompt_source})")
    return _write(store, context, cache, "pez_prompts", rows, usable, ("image_hash", "variant"))


@dg.asset(group_name=GROUP, deps=[captions], kinds={"parquet"}, **_args("clip_deltas"))
def clip_deltas(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                methods: MethodsResource) -> dg.MaterializeResult:
    """Dimg, Dtxt and their slerp Dinter for every distinct (A, A′) and α of the run's DI methods."""
    store, loaded, cache, usable, variants = _inputs(context, storage, models, methods)
    rows = []
    for config in {c.alpha: c for c in variants.values()}.values():
        for a_hash, ap_hash in _distinct(usable, "a", "a_prime"):
            def compute(a_hash=a_hash, ap_hash=ap_hash, config=config):
                a, a_prime = store.get_png(a_hash), store.get_png(ap_hash)
                d = di.deltas(loaded, a, a_prime, config, cache)
                return {"deltas_key": key_digest("clip_deltas", di.deltas_key(loaded, a, a_prime, config)),
                        "cos_image_text": float(d.image @ d.text)}

            rows.append(_attempt({"a_hash": a_hash, "a_prime_hash": ap_hash, "alpha": config.alpha,
                                  "deltas_key": None, "cos_image_text": None, "error": None}, compute))
    return _write(store, context, cache, "clip_deltas", rows, usable, ("a_hash", "a_prime_hash", "alpha"))


@dg.asset(group_name=GROUP, deps=[pez_prompts, clip_deltas], kinds={"parquet", "safetensors"}, **_args("diff_tokens"))
def diff_tokens(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                methods: MethodsResource) -> dg.MaterializeResult:
    """D̃ for every distinct (A, A′) × DI method (in the cache, safetensors) with its loss curve,
    the partition's pairs trained `methods.batch_size` at a time."""
    store, loaded, cache, usable, variants = _inputs(context, storage, models, methods)
    pairs = _distinct(usable, "a", "a_prime")
    rows, curves, seed = [], [], methods.seed
    for variant, di_config in variants.items():
        images = [(store.get_png(a_hash), store.get_png(ap_hash)) for a_hash, ap_hash in pairs]
        start = time.perf_counter()  # steps 1–4 for every pair, D̃ trained `batch_size` at a time
        results = di.prepare_diff_tokens(loaded, images, di_config, seed=seed, cache=cache,
                                         batch_size=methods.batch_size)
        seconds = (time.perf_counter() - start) / max(1, len(pairs))
        for (a_hash, ap_hash), (a, a_prime), result in zip(pairs, images, results):
            row = {"a_hash": a_hash, "a_prime_hash": ap_hash, "variant": variant,
                   "config": json.dumps(asdict(di_config)), "tokens_key": None, "final_tc": None,
                   "final_clip": None, "curve": None, "seconds": None, "error": None}
            if isinstance(result, Exception):  # a pair whose inputs or training fail is an error row
                row["error"] = f"{type(result).__name__}: {result}"
            else:
                curves.append(result.curve)
                key = di.diff_tokens_key(loaded, a, a_prime, di_config, seed)
                row.update({"tokens_key": key_digest("diff_tokens", key),
                            "final_tc": result.curve["tc"][-1] if result.curve["tc"] else None,
                            "final_clip": result.curve["clip"][-1] if result.curve["clip"] else None,
                            "curve": json.dumps(result.curve), "seconds": seconds})
            rows.append(row)
        context.log.info(f"[{variant}] D̃ for {len(pairs)} pair(s), batches of {methods.batch_size}, "
                         f"{seconds:.1f} s per pair")
    metadata = {"batch_size": methods.batch_size}
    if curves:
        metadata["loss_curve"] = png_markdown(_curve_png(curves), "loss curve")
    return _write(store, context, cache, "diff_tokens", rows, usable, ("a_hash", "a_prime_hash", "variant"),
                  **metadata)


def _curve_png(curves: list[dict]) -> bytes:
    """Mean DIFF-token loss curves (Ltc, Lclip, total) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(10, 2.6))
    for ax, key in zip(axes, ("tc", "clip", "total")):
        series = [c[key] for c in curves if c.get(key)]
        if series:
            length = min(len(s) for s in series)
            ax.plot(np.mean([s[:length] for s in series], axis=0))
        ax.set_title({"tc": "Ltc", "clip": "Lclip", "total": "L"}[key])
        ax.set_xlabel("step")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


DI_ASSETS = [captions, pez_prompts, clip_deltas, diff_tokens]
