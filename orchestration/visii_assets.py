"""VISII's learned instructions as an asset, between triplets and generations:

    triplets → visii_instructions → generations

For every VISII method of the run (the `methods` resource), the instruction of every
distinct (A, A′) pair of the partition (ops.visii steps 1–4: the PEZ init on A′, then the
editor-conditioning rows trained on the pair), `methods.batch_size` pairs at a time, into
the on-disk cache (orchestration.cache), so `generations` only applies them to each B and a
later run, partition or apply setting finds them. One row per pair × VISII method, with its
training record (the MSE and CLIP curves, the step kept). Table schema: evaluation/schemas.py.
"""

import json
from dataclasses import asdict

import dagster as dg

from ops import visii
from ops.cache import key_digest
from orchestration.metadata import (
    asset_args,
    method_inputs,
    prepared_pairs,
    write_intermediate,
)
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource

GROUP = "visii"


@dg.asset(group_name=GROUP, deps=["triplets"], kinds={"parquet", "safetensors"},
          **asset_args("visii_instructions", "prepare", runs_methods=True, gpu=True))
def visii_instructions(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                       methods: MethodsResource) -> dg.MaterializeResult:
    """The learned instruction of every distinct (A, A′) × VISII method (in the cache, safetensors)
    with its training curves, `methods.batch_size` pairs at a time; a run without a VISII method keeps
    the earlier runs' rows."""
    store, loaded, cache, usable, variants = method_inputs(context, storage, models, methods, visii.visii)
    rows, seed = [], methods.seed
    for variant, config, (a_hash, ap_hash), (a, a_prime), result, cost in prepared_pairs(
            context, store, loaded, usable, variants, visii.prepare_instructions, seed=seed, cache=cache,
            batch_size=methods.batch_size, what="instructions"):
        row = {"a_hash": a_hash, "a_prime_hash": ap_hash, "variant": variant,
               "config": json.dumps(asdict(config)), "instruction_key": None, "init_text": None,
               "best_step": None, "best_mse": None, "final_clip": None, "curve": None, "seconds": None,
               "peak_memory_mb": None, "error": None}
        if isinstance(result, Exception):  # a pair whose inputs or training fail is an error row
            row["error"] = f"{type(result).__name__}: {result}"
        else:
            curve = {"mse": result.mse, "clip": result.clip}
            key = visii.instruction_key(loaded, a, a_prime, config, seed)
            row.update({"instruction_key": key_digest("visii_instruction", key), "init_text": result.init_text,
                        "best_step": result.best_step,
                        "best_mse": result.mse[result.best_step] if result.mse else None,
                        "final_clip": result.clip[-1] if result.clip else None,
                        "curve": json.dumps(curve), **cost})
        rows.append(row)
    return write_intermediate(store, context, cache, "visii_instructions", rows, usable,
                              ("a_hash", "a_prime_hash", "variant"), result="instruction_key",
                              curve_panels={"mse": "MSE(ε̂, ε)", "clip": "clamped cos"},
                              batch_size=methods.batch_size)
