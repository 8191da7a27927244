"""Difference Inversion's intermediates as assets, between triplets and generations:

    triplets → captions → pez_prompts ─┐
                       └→ clip_deltas ─┴→ diff_tokens → generations

Each asset runs one step of `ops.difference_inversion` for every Difference
Inversion method of the run (the `methods` resource) through the on-disk cache
(orchestration.cache), so `generations` — and any later run, partition or method
variant — finds these results instead of recomputing them. Rows are per distinct
image (captions, prompts) or per distinct (A, A′) pair × DI method (deltas, D̃),
so a second B costs nothing. Table schemas: evaluation/presentation/schemas.py.
"""


import json

import dagster as dg

from ops import difference_inversion as di
from ops.cache import key_digest
from ops.captions import caption
from orchestration.metadata import (
    asset_args,
    attempt,
    distinct_rows,
    method_inputs,
    prepared_table,
    write_intermediate,
)
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource

GROUP = "difference_inversion"


def _args(table: str) -> dict:
    return asset_args(table, "prepare", runs_methods=True, gpu=True)


def _inputs(context, storage: AnalogyStorage, models: ModelsResource, methods: MethodsResource):
    """The store, the models, the cache, the usable triplets and the run's DI methods (label → config)."""
    return method_inputs(context, storage, models, methods, di.difference_inversion)


@dg.asset(group_name=GROUP, deps=["triplets"], kinds={"parquet"}, **_args("captions"))
def captions(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
             methods: MethodsResource) -> dg.MaterializeResult:
    """A caption for every distinct A, A′ and B (BLIP-2, or retrieval in the toy world), when a
    Difference Inversion method is among the run's methods (else the earlier runs' rows are kept)."""
    store, loaded, cache, usable, variants = _inputs(context, storage, models, methods)
    hashes = sorted({h for t in usable for h in (t["a_hash"], t["a_prime_hash"], t["b_hash"])}) if variants else []
    rows = [attempt({"image_hash": h, "captioner": None, "caption": None, "error": None},
                     lambda h=h: {"caption": caption(loaded, store.get_png(h), cache),
                                  "captioner": loaded.captioner.model_id}) for h in hashes]
    return write_intermediate(store, context, cache, "captions", rows, usable, ("image_hash",))


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
    return write_intermediate(store, context, cache, "pez_prompts", rows, usable, ("image_hash", "variant"))


@dg.asset(group_name=GROUP, deps=[captions], kinds={"parquet"}, **_args("clip_deltas"))
def clip_deltas(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                methods: MethodsResource) -> dg.MaterializeResult:
    """Dimg, Dtxt and their slerp Dinter for every distinct (A, A′), α and Dtxt source of the run's DI methods."""
    store, loaded, cache, usable, variants = _inputs(context, storage, models, methods)
    rows = []
    for config in {c.delta_settings: c for c in variants.values()}.values():
        for a_hash, ap_hash in distinct_rows(usable, "a", "a_prime"):
            def compute(a_hash=a_hash, ap_hash=ap_hash, config=config):
                a, a_prime = store.get_png(a_hash), store.get_png(ap_hash)
                d = di.deltas(loaded, a, a_prime, config, cache)
                return {"deltas_key": key_digest("clip_deltas", di.deltas_key(loaded, a, a_prime, config)),
                        "cos_image_text": float(d.image @ d.text)}

            rows.append(attempt({"a_hash": a_hash, "a_prime_hash": ap_hash, "alpha": config.alpha,
                                  "text_delta_source": config.text_delta_source, "deltas_key": None,
                                  "cos_image_text": None, "error": None}, compute))
    return write_intermediate(store, context, cache, "clip_deltas", rows, usable,
                              ("a_hash", "a_prime_hash", "alpha", "text_delta_source"))


def _tokens_record(loaded, a, a_prime, config: di.DIConfig, seed: int, made) -> dict:
    """A `diff_tokens` row's columns for one trained D̃ (`made`: its curve)."""
    return {"tokens_key": key_digest("diff_tokens", di.diff_tokens_key(loaded, a, a_prime, config, seed)),
            "final_tc": made.curve["tc"][-1] if made.curve["tc"] else None,
            "final_clip": made.curve["clip"][-1] if made.curve["clip"] else None, "curve": json.dumps(made.curve)}


@dg.asset(group_name=GROUP, deps=[pez_prompts, clip_deltas], kinds={"parquet", "safetensors"}, **_args("diff_tokens"))
def diff_tokens(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                methods: MethodsResource) -> dg.MaterializeResult:
    """D̃ for every distinct (A, A′) × DI method (in the cache, safetensors) with its loss curve,
    the partition's pairs trained `methods.batch_size` at a time (steps 1–4 of ops.difference_inversion)."""
    return prepared_table(context, storage, models, methods, di.difference_inversion, di.prepare_diff_tokens,
                          _tokens_record, table="diff_tokens", result="tokens_key", what="D̃",
                          curve_panels={"tc": "Ltc", "clip": "Lclip", "total": "L"})


DI_ASSETS = [captions, pez_prompts, clip_deltas, diff_tokens]
