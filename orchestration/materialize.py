"""Materialise every asset and check of the code location for one partition, in
process (what `analogy demo` and the pipeline tests do; the UI does the same
through `analogy_job`)."""

from __future__ import annotations

import dagster as dg

from orchestration.definitions import ALL_ASSETS, ALL_CHECKS
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource


def materialize_partition(partition: str, home: str, *, methods: list[str] | None = None, profile: str = "toy",
                          seed: int = 0, log_level: str = "WARNING", instance: dg.DagsterInstance | None = None,
                          tags: dict[str, str] | None = None, selection=None) -> dg.ExecuteInProcessResult:
    """Run the whole graph (or `selection`) for `partition` into `home`. `methods` (specs, as
    `analogy bench` takes them; None = the registered defaults) and `seed` are the run's
    `methods` resource, which every asset that prepares or runs a method reads."""
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS],
        partition_key=partition,
        instance=instance,
        resources={"storage": AnalogyStorage(home=home), "models": ModelsResource(profile=profile),
                   "methods": MethodsResource(methods=methods or [], seed=seed)},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags=tags,
        raise_on_error=False,
        selection=selection,
    )
