"""Materialise every asset and check of the code location for one partition as a run of
`analogy_job` (what `analogy demo` and the pipeline tests do; the UI and the schedule launch the
same job): in process by default, or on the executor `$ANALOGY_EXECUTOR` names
(orchestration.executors), whose workers rebuild the same job from `partition_job`'s arguments."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import dagster as dg

from evaluation.ingestion.files import FULL_DISK_TEXTS, StoreUnavailable, causes
from orchestration.definitions import ALL_ASSETS, ALL_CHECKS
from orchestration.executors import executor_def, executor_name
from orchestration.resources import AnalogyStorage, MethodsResource, ModelsResource
from orchestration.schedules import analogy_job

INSTANCE_CONFIG = Path(__file__).with_name("dagster.yaml")
"""The instance config the project ships (`analogy demo` puts it in its DAGSTER_HOME): sqlite
storage, no telemetry, and a limit of one step at a time in the `gpu` pool."""

INTERRUPTED = "DagsterExecutionInterruptedError"
FAULT_TYPES = {"StoreUnavailable": "store", "DiskFull": "disk"}
"""evaluation.ingestion.files' one-line faults, by the class name Dagster records with a step's error."""


class Fault(NamedTuple):
    kind: str  # "store" (an object store that does not answer) or "disk" (no space or quota left)
    line: str


def _causes(error) -> list:
    """The error and what it came from (its causes and contexts), outermost first."""
    found, todo = [], [error]
    while todo:
        info = todo.pop(0)
        if info is not None and all(info is not f for f in found):
            found.append(info)
            todo += [info.cause, info.context]
    return found


def fault_of(error) -> Fault | None:
    """The known fault a step's error (Dagster's SerializableErrorInfo) comes from, in one line, or
    None: a StoreUnavailable or DiskFull, or a writer's message of a full disk (DuckDB, sqlite)."""
    chain = _causes(error)
    for info in chain:
        if info.cls_name in FAULT_TYPES:
            text = info.message.strip()
            start = text.find(f"{info.cls_name}: ")
            return Fault(FAULT_TYPES[info.cls_name], text[start + len(info.cls_name) + 2:] if start >= 0 else text)
    for info in chain:  # a fault that reached us as text: DuckDB wraps its fsspec filesystem's errors so
        for name, kind in FAULT_TYPES.items():
            if (start := info.message.find(f"{name}: ")) >= 0:
                return Fault(kind, info.message[start + len(name) + 2:].split("\n", 1)[0].strip())
    for info in chain:
        if any(words in info.message for words in FULL_DISK_TEXTS):
            return Fault("disk", " ".join(info.message.split()))
    return None


def run_fault(result) -> Fault | None:
    """The known fault the first failed step of a run's result failed on, or None."""
    for event in result.all_events:
        if event.is_step_failure and (fault := fault_of(event.step_failure_data.error)):
            return fault
    return None


def fault_in(exc: BaseException, places: list) -> Fault | None:
    """The known fault an exception that escaped a run comes from (an unreachable store; a full disk
    on one of the local `places`, the home and DAGSTER_HOME: Dagster's sqlite says so itself), or None."""
    from orchestration.storage import disk_fault

    if unreachable := next((e for e in causes(exc) if isinstance(e, StoreUnavailable)), None):
        return Fault("store", str(unreachable))
    full = disk_fault(exc, places)
    return None if full is None else Fault("disk", str(full))


def fault_advice(fault: Fault, home: str) -> str:
    """What a user whose run stopped on `fault` reads, in one line."""
    kept = "finished assets are kept and a re-run goes on from them"
    if fault.kind == "store":
        return f"the object store of {home} does not answer ({fault.line}); run again once it does: {kept}"
    return f"no space left for {home} ({fault.line}); free some and run again: {kept}"


class _NotInterrupts(logging.Filter):
    """Drops the log records of an interrupted run (a traceback of Dagster's own per Ctrl-C):
    the caller reports an interrupt in one line and the run is recorded as canceled."""

    def filter(self, record: logging.LogRecord) -> bool:
        return INTERRUPTED not in record.getMessage()


class _OneLineFaults(logging.Filter):
    """A step that failed on a known fault (fault_of) logs one line, not Dagster's traceback; after
    it, what follows from it is dropped (the same fault in later steps, the steps not run, the run
    failed on it): the store or the disk is the one thing to fix, and the caller says so."""

    def __init__(self):
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None) or {}  # Dagster's structured record (dagster_event, step_key)
        event = meta.get("dagster_event")
        fault = event is not None and fault_of(getattr(event.event_specific_data, "error", None))
        if fault and event.is_step_failure and not self.seen:
            self.seen = True
            record.msg, record.args = f"{event.step_key} failed: {fault.line}", ()
            return True
        if fault:  # a later step or the run, failed on it too (the run's logger is not the steps' one)
            return False
        return not (self.seen and str(meta.get("orig_message", "")).startswith("Dependencies for step"))


@dg.logger(dg.colored_console_logger.config_schema,
           description="Dagster's console logger, minus interrupt tracebacks; a full disk or an unreachable store "
                       "in one line")
def console(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = dg.colored_console_logger.logger_fn(init_context)
    for handler in log.handlers:
        handler.addFilter(_NotInterrupts())
        handler.addFilter(_OneLineFaults())
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
