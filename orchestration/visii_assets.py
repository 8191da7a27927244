"""VISII's learned instructions as an asset, between triplets and generations:

    triplets → visii_instructions → generations

For every VISII method of the run (the `methods` resource), the instruction of every
distinct (A, A′) pair of the partition (ops.visii steps 1–4: the PEZ init on A′, then the
editor-conditioning rows trained on the pair), `methods.batch_size` pairs at a time, into
the on-disk cache (orchestration.cache), so `generations` only applies them to each B and a
later run, partition or apply setting finds them. One row per pair × VISII method, with its
training record (the MSE and CLIP curves, the step kept). Table schema: evaluation/presentation/schemas.py.
"""

import json

import dagster as dg

from ops import visii
from ops.cache import key_digest
from orchestration.metadata import asset_args, prepared_table
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource

GROUP = "visii"


def _instruction_record(loaded, a, a_prime, config: visii.VISIIConfig, seed: int, made) -> dict:
    """A `visii_instructions` row's columns for one learned instruction (`made`: its training record)."""
    return {"instruction_key": key_digest("visii_instruction", visii.instruction_key(loaded, a, a_prime, config, seed)),
            "init_text": made.init_text, "best_step": made.best_step,
            "best_mse": made.mse[made.best_step] if made.mse else None,
            "final_clip": made.clip[-1] if made.clip else None,
            "curve": json.dumps({"mse": made.mse, "clip": made.clip})}


@dg.asset(group_name=GROUP, deps=["triplets"], kinds={"parquet", "safetensors"},
          **asset_args("visii_instructions", "prepare", runs_methods=True, gpu=True))
def visii_instructions(context: dg.AssetExecutionContext, storage: AnalogyStorage, models: ModelsResource,
                       methods: MethodsResource) -> dg.MaterializeResult:
    """The learned instruction of every distinct (A, A′) × VISII method (in the cache, safetensors)
    with its training curves, `methods.batch_size` pairs at a time; a run without a VISII method keeps
    the earlier runs' rows."""
    return prepared_table(context, storage, models, methods, visii.visii, visii.prepare_instructions,
                          _instruction_record, table="visii_instructions", result="instruction_key",
                          what="instructions", curve_panels={"mse": "MSE(ε̂, ε)", "clip": "clamped cos"})
