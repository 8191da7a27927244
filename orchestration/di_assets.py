"""Difference Inversion's intermediates as assets, between triplets and generations:

    triplets → captions → pez_prompts ─┐
                       └→ clip_deltas ─┴→ diff_tokens → generations

Each asset calls one step of `ops.di_method` through a method context whose
cache lives on disk (orchestration.memo), so the generations asset — and any
later run, partition or method variant — finds these results instead of
recomputing them. Table schemas: evaluation/schemas.py. Rows are per distinct image (captions, prompts) or per
distinct (A, A′) pair × DI variant (deltas, D̃), so a second B costs nothing.
"""


import io
import json
import time
from dataclasses import asdict
from typing import Any

import dagster as dg

from ops import di_method
from ops.registry import default_methods, get_method
from orchestration.memo import DiskMemo
from orchestration.partitions import dataset_partitions
from orchestration.resources import AnalogyStorage, ModelsResource

GROUP = "difference_inversion"



class DIStepsConfig(dg.Config):
    """Which Difference Inversion variants to prepare: the DI-family methods among
    `methods` (None → the default methods), with the same `options` as generations."""

    methods: list[str] | None = None
    options: dict[str, dict[str, Any]] = {}


def di_variants(config: DIStepsConfig, profile) -> dict[str, di_method.DIConfig]:
    names = config.methods or default_methods()
    variants = {}
    for name in names:
        method = get_method(name)
        if method.target == "ops.di_method:generate":
            variants[name] = di_method.resolve_config(profile, method.resolve(config.options.get(name)))
    return variants


def _inputs(context, storage: AnalogyStorage, models: ModelsResource):
    store = storage.store()
    ctx = models.method_context(0, context.log, memo=DiskMemo(store))
    usable = [t for t in store.read_table("triplets", context.partition_key) if not t["error"]]
    return store, ctx, usable


def _distinct(rows: list[dict], *roles: str) -> list[tuple[str, ...]]:
    return sorted({tuple(r[f"{role}_hash"] for role in roles) for r in rows})


def _attempt(row: dict, fn) -> dict:
    """Fill `row` from fn(); an exception becomes the row's error (one bad input fails alone)."""
    try:
        row.update(fn())
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _write(store, context, table: str, rows: list[dict], **metadata) -> dg.MaterializeResult:
    path = store.write_table(table, context.partition_key, rows)
    errors = sum(1 for r in rows if r.get("error"))
    for r in rows:
        if r.get("error"):
            context.log.warning(f"{table}: {r['error']}")
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path)), "rows": len(rows),
                                          "errors": errors, **metadata})


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=["triplets"], pool="gpu", kinds={"parquet"})
def captions(context: dg.AssetExecutionContext, config: DIStepsConfig, storage: AnalogyStorage,
             models: ModelsResource) -> dg.MaterializeResult:
    """A caption for every distinct A, A′ and B (BLIP-2, or retrieval in the toy world), when a
    Difference Inversion variant is among the selected methods."""
    store, ctx, usable = _inputs(context, storage, models)
    if not di_variants(config, ctx.profile):
        usable = []  # nothing to prepare: an empty table, not minutes of captioning
    hashes = sorted({h for t in usable for h in (t["a_hash"], t["a_prime_hash"], t["b_hash"])})
    rows = [_attempt({"image_hash": h, "captioner": ctx.captioner.model_id, "caption": None, "error": None},
                     lambda h=h: {"caption": di_method.caption(ctx, store.get_png(h))}) for h in hashes]
    return _write(store, context, "captions", rows, captioner=ctx.captioner.model_id)


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=[captions], pool="gpu", kinds={"parquet"})
def pez_prompts(context: dg.AssetExecutionContext, config: DIStepsConfig, storage: AnalogyStorage,
                models: ModelsResource) -> dg.MaterializeResult:
    """Hard prompts (token ids, text, cosine) of every distinct image, per DI variant's prompt settings."""
    store, ctx, usable = _inputs(context, storage, models)
    hashes = sorted({h for t in usable for h in (t["a_hash"], t["a_prime_hash"], t["b_hash"])})
    rows = []
    for variant, cfg in di_variants(config, ctx.profile).items():
        for h in hashes:
            def compute(h=h, cfg=cfg):
                p = di_method.prompt(ctx, store.get_png(h), cfg)
                return {"token_ids": p.token_ids, "text": p.text, "cosine": p.cosine}

            rows.append(_attempt({"image_hash": h, "variant": variant, "clip": ctx.joint_clip.model_id,
                                  "prompt_source": cfg.prompt_source, "token_ids": None, "text": None,
                                  "cosine": None, "error": None}, compute))
            context.log.info(f"[{variant} {len(rows)}/{len(hashes)}] prompt of {h[:8]}: {rows[-1]['text']!r}")
    return _write(store, context, "pez_prompts", rows)


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=[captions], pool="gpu", kinds={"parquet"})
def clip_deltas(context: dg.AssetExecutionContext, config: DIStepsConfig, storage: AnalogyStorage,
                models: ModelsResource) -> dg.MaterializeResult:
    """Dimg, Dtxt and their slerp Dinter for every distinct (A, A′)."""
    store, ctx, usable = _inputs(context, storage, models)
    alphas = sorted({cfg.alpha for cfg in di_variants(config, ctx.profile).values()})
    rows = []
    for alpha in alphas:
        cfg = di_method.DIConfig(alpha=alpha)
        for a_hash, ap_hash in _distinct(usable, "a", "a_prime"):
            def compute(a_hash=a_hash, ap_hash=ap_hash, cfg=cfg):
                d = di_method.deltas(ctx, store.get_png(a_hash), store.get_png(ap_hash), cfg)
                digest = store.put_tensors({"image": d.image, "text": d.text, "interpolated": d.interpolated})
                return {"deltas_hash": digest, "cos_image_text": float(d.image @ d.text)}

            rows.append(_attempt({"a_hash": a_hash, "a_prime_hash": ap_hash, "alpha": alpha, "deltas_hash": None,
                                  "cos_image_text": None, "error": None}, compute))
    return _write(store, context, "clip_deltas", rows)


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, deps=[pez_prompts, clip_deltas], pool="gpu",
          kinds={"parquet", "safetensors"})
def diff_tokens(context: dg.AssetExecutionContext, config: DIStepsConfig, storage: AnalogyStorage,
                models: ModelsResource) -> dg.MaterializeResult:
    """D̃ for every distinct (A, A′) × DI variant (safetensors blobs) with its loss curve."""
    store, ctx, usable = _inputs(context, storage, models)
    pairs = _distinct(usable, "a", "a_prime")
    rows, curves = [], []
    for variant, cfg in di_variants(config, ctx.profile).items():
        for i, (a_hash, ap_hash) in enumerate(pairs, start=1):
            def compute(a_hash=a_hash, ap_hash=ap_hash, cfg=cfg):
                start = time.perf_counter()
                d = di_method.diff_tokens(ctx, store.get_png(a_hash), store.get_png(ap_hash), cfg)
                curves.append(d.curve)
                return {"tokens_hash": store.put_tensors({"tokens": d.tokens}),
                        "final_tc": d.curve["tc"][-1] if d.curve["tc"] else None,
                        "final_clip": d.curve["clip"][-1] if d.curve["clip"] else None,
                        "curve": json.dumps(d.curve), "seconds": time.perf_counter() - start}

            rows.append(_attempt({"a_hash": a_hash, "a_prime_hash": ap_hash, "variant": variant,
                                  "config": json.dumps(asdict(cfg)), "tokens_hash": None, "final_tc": None,
                                  "final_clip": None, "curve": None, "seconds": None, "error": None}, compute))
            context.log.info(f"[{variant} {i}/{len(pairs)}] D̃ for pair {a_hash[:8]}/{ap_hash[:8]}")
    metadata = {}
    if curves:
        metadata["loss_curve"] = dg.MetadataValue.md(f"![loss curve](data:image/png;base64,{_curve_png(curves)})")
    return _write(store, context, "diff_tokens", rows, **metadata)


def _curve_png(curves: list[dict]) -> str:
    """Mean DIFF-token loss curves (Ltc, Lclip, total) as a base64 PNG."""
    import base64

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
    return base64.b64encode(buffer.getvalue()).decode()


DI_ASSETS = [captions, pez_prompts, clip_deltas, diff_tokens]
