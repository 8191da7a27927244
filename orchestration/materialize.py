"""Materialise every asset and check of the code location for one partition as a run of
`analogy_job` (what `analogy demo` and the pipeline tests do; the UI and the schedule launch the
same job): in process by default, or on the executor `$ANALOGY_EXECUTOR` names
(orchestration.executors), whose workers rebuild the same job from `partition_job`'s arguments."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from orchestration.definitions import ALL_ASSETS, ALL_CHECKS
from orchestration.executors import executor_def, executor_name
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource
from orchestration.schedules import analogy_job

INSTANCE_CONFIG = Path(__file__).with_name("dagster.yaml")
"""The instance config the project ships (`analogy demo` puts it in its DAGSTER_HOME): sqlite
storage, no telemetry, and a limit of one step at a time in the `gpu` pool."""

INTERRUPTED = "DagsterExecutionInterruptedError"


class _NotInterrupts(logging.Filter):
    """Drops the log records of an interrupted run (a traceback of Dagster's own per Ctrl-C):
    the caller reports an interrupt in one line and the run is recorded as canceled."""

    def filter(self, record: logging.LogRecord) -> bool:
        return INTERRUPTED not in record.getMessage()


@dg.logger(dg.colored_console_logger.config_schema, description="Dagster's console logger, minus interrupt tracebacks")
def console(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = dg.colored_console_logger.logger_fn(init_context)
    for handler in log.handlers:
        handler.addFilter(_NotInterrupts())
    return log


def was_interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """The run stopped because of Ctrl-C (SIGINT), not because a step failed on its own."""
    return any(INTERRUPTED in str(e.event_specific_data) or "interrupted" in (e.message or "")
               for e in result.all_events if e.is_run_failure or e.is_step_failure)


def _definitions(home: str, methods: list[str] | None, profile: str, seed: int,
                 executor: str | None = None) -> dg.Definitions:
    resources = {"storage": AnalogyStorage(home=home), "models": ModelsResource(profile=profile),
                 "methods": MethodsResource(methods=methods or [], seed=seed)}
    return dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[analogy_job], resources=resources,
                          loggers={"console": console}, executor=executor_def(executor))


def partition_job(home: str, methods: list[str] | None, profile: str, seed: int, executor: str) -> dg.JobDefinition:
    """`analogy_job` with these resources and executor: what every worker of a run rebuilds
    (dg.build_reconstructable_job calls it by name, in the worker's process)."""
    return _definitions(home, methods, profile, seed, executor).resolve_job_def(analogy_job.name)


def materialize_partition(partition: str, home: str, *, methods: list[str] | None = None, profile: str = "toy",
                          seed: int = 0, log_level: str = "WARNING", instance: dg.DagsterInstance | None = None,
                          tags: dict[str, str] | None = None, selection=None, executor: str | None = None):
    """Run the whole graph (or `selection`, an AssetSelection or asset keys) for `partition` into
    `home`. `methods` (specs, as `analogy bench` takes them; None = the registered defaults) and
    `seed` are the run's `methods` resource, which every asset that prepares or runs a method reads.
    `executor` (else `$ANALOGY_EXECUTOR`, else in process): orchestration.executors; any but
    `in_process` needs a persistent `instance` and returns Dagster's JobExecutionResult."""
    executor = executor_name(executor, default="in_process")
    defs = _definitions(home, methods, profile, seed, "in_process")
    asset_selection = None
    if selection is not None:
        graph = defs.resolve_asset_graph()
        chosen = selection if isinstance(selection, dg.AssetSelection) else dg.AssetSelection.assets(*selection)
        asset_selection = sorted(chosen.resolve(graph))
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if executor != "in_process":
        if instance is None or not instance.is_persistent:
            raise ValueError(f"the {executor} executor needs a persistent Dagster instance (set DAGSTER_HOME)")
        job = dg.build_reconstructable_job(__name__, partition_job.__name__, reconstructable_kwargs={
            "home": home, "methods": methods, "profile": profile, "seed": seed, "executor": executor})
        return dg.execute_job(job, instance, run_config=run_config,
                              tags={**(tags or {}), "dagster/partition": partition},
                              asset_selection=asset_selection)
    return defs.resolve_job_def(analogy_job.name).execute_in_process(
        partition_key=partition,
        instance=instance,
        run_config=run_config,
        tags=tags,
        raise_on_error=False,
        asset_selection=asset_selection,
    )
