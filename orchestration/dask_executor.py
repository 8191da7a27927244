"""dagster-dask's executor with the one repair this project needs, kept apart so it can go the day
upstream works: tests/test_dask_executor.py runs upstream's executor on a job with a pool and fails,
saying so, once it succeeds.

The break: Dask ≥ 2025 walks every tuple argument of `Client.submit` looking for futures, and a run
of a job with pools carries a Dagster `@record` (RunOpConcurrency) that refuses iteration, so
upstream's submit fails before any step runs ("Iteration is not allowed on `@record`
RunOpConcurrency"). Private Dagster imports: the two that let Ctrl-C stop a run while it waits on
Dask (as Dagster's own executors do).
"""

from __future__ import annotations

import contextlib

import dagster as dg


def dask_executor() -> dg.ExecutorDefinition:
    """dagster-dask's executor (its config schema, cluster set-up, worker function and resource
    tags), except that each step's arguments travel to Dask in one opaque object (and its events come
    back in one, which also spares Dask's sizeof warnings on Dagster's events). Task keys also carry
    the run id, so two runs of the job can share a cluster."""
    from dagster._core.errors import raise_execution_interrupts
    from dagster._utils import iterate_with_context
    from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements
    from dagster_dask.executor import dask_executor as upstream

    class Executor(DaskExecutor):
        def execute(self, plan_context, execution_plan):
            import dask.distributed

            if self.cluster_type not in ("existing", "local"):
                raise ValueError(f"dask cluster {self.cluster_type!r}: this project uses 'existing' or 'local'")
            run, instance = plan_context.dagster_run, plan_context.instance
            if self.cluster_type == "existing":
                cluster = contextlib.nullcontext(self.cluster_configuration["address"])
            else:
                cluster = dask.distributed.LocalCluster(**self.build_dict(plan_context.job_name))
            with cluster as where, dask.distributed.Client(where) as client:
                futures = {}
                for level in execution_plan.get_steps_to_execute_by_level():
                    for step in level:
                        after = [futures[key] for step_input in step.step_inputs for key in step_input.dependency_keys]
                        arguments = _Opaque((plan_context.reconstructable_job, run, plan_context.run_config,
                                             [step.key], instance.get_ref(), execution_plan.known_state))
                        futures[step.key] = client.submit(
                            _run_step, after, arguments, key=f"{plan_context.job_name}.{step.key}.{run.run_id}",
                            resources=get_dask_resource_requirements(step.tags))
                done = dask.distributed.as_completed(list(futures.values()), with_results=True)
                for _, events in iterate_with_context(raise_execution_interrupts, done):
                    yield from events.value

    @dg.executor(name="dask", config_schema=upstream.config_schema, requirements=upstream.get_requirements(None))
    def dask(init_context):
        ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
        return Executor(cluster_type, cluster_configuration)

    return dask


class _Opaque:
    """A value Dask hands to a task as it is (not a tuple, so never walked for futures)."""

    def __init__(self, value):
        self.value = value


def _run_step(after: list, arguments: _Opaque) -> _Opaque:
    """One step on a Dask worker, its events returned opaque too (`after`: the steps it waits for)."""
    from dagster_dask.executor import query_on_dask_worker

    return _Opaque(query_on_dask_worker(after, *arguments.value))
