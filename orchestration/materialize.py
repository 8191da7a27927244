"""Materialise every asset and check of the code location for one partition, in
process (what `analogy demo` and the pipeline tests do; the UI does the same
through `analogy_job`)."""

from __future__ import annotations

import dagster as dg

from orchestration.definitions import ALL_ASSETS, ALL_CHECKS
from orchestration.resources import AnalogyStorage, ModelsResource


def _config_fields(assets_def: dg.AssetsDefinition) -> set[str]:
    config_type = assets_def.op.config_schema.as_field().config_type
    return set(getattr(config_type, "fields", {}) or {})


def materialize_partition(partition: str, home: str, *, methods: list[str] | None = None, profile: str = "toy",
                          log_level: str = "WARNING", instance: dg.DagsterInstance | None = None,
                          tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    """Run the whole graph for `partition` into `home`. `methods` goes to every asset
    whose config has a `methods` field (generations, and the steps that prepare methods)."""
    ops_config = {}
    if methods is not None:
        for assets_def in ALL_ASSETS:
            if "methods" in _config_fields(assets_def):
                ops_config[assets_def.op.name] = {"config": {"methods": methods}}
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        partition_key=partition,
        instance=instance,
        resources={"storage": AnalogyStorage(home=home), "models": ModelsResource(profile=profile)},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}, "ops": ops_config},
        tags=tags,
        raise_on_error=False,
    )
