"""Where a run's steps execute, chosen by configuration, never by editing code.

`ANALOGY_EXECUTOR` (read when the code location loads, and by `analogy demo`):

    unset          the UI's runs: Dagster's default (one process per step); `analogy demo`: in process
    in_process     every step in the run's own process
    multiprocess   one process per step on this machine
    dask           one Dask task per step (dagster-dask): on the scheduler at ANALOGY_DASK_ADDRESS
                   (tcp://host:8786), else on a LocalCluster of ANALOGY_DASK_WORKERS (default 2) processes
    k8s            one Kubernetes Job per step (dagster-k8s' k8s_job_executor; the deploy files in
                   orchestration/deploy/ set it, with the image, namespace and environment)

Steps that load a model (the `gpu` pool, orchestration.metadata.asset_args) ask each engine for a
whole accelerator: a Kubernetes step requests `nvidia.com/gpu: 1`; a Dask step needs one unit of the
worker resource `GPU` (start Dask workers with `--resources GPU=1`, one worker per card; the local
cluster gives each of its workers one). Under the in-process, multiprocess and Kubernetes executors
the instance's `gpu` pool limit (1, orchestration/dagster.yaml) also keeps two GPU steps from
running at once.

dagster-dask and dagster-k8s come with the `scale` extra (`pip install -e '.[scale]'`); they are
imported only when chosen.
"""

from __future__ import annotations

import contextlib
import os

import dagster as dg

EXECUTOR_ENV = "ANALOGY_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "dask", "k8s")
DASK_GPU_RESOURCE = "GPU"
K8S_GPU = "nvidia.com/gpu"

# The execution tags of a step that loads a model: what each engine reads to give it a whole card.
GPU_OP_TAGS = {
    "dagster-k8s/config": {"container_config": {"resources": {"limits": {K8S_GPU: "1"},
                                                              "requests": {K8S_GPU: "1"}}}},
    "dagster-dask/resource_requirements": {DASK_GPU_RESOURCE: 1},
}


def executor_name(name: str | None = None, default: str | None = None) -> str | None:
    """`name`, else `$ANALOGY_EXECUTOR`, else `default`; a name not in EXECUTORS fails here, when the
    code location loads or the CLI starts, before any work."""
    name = name or os.environ.get(EXECUTOR_ENV) or default
    if name is not None and name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r}: choose one of {', '.join(EXECUTORS)} (or leave it unset)")
    return name


def dask_cluster_config() -> dict:
    """The dask executor's `cluster` config from the environment."""
    address = os.environ.get("ANALOGY_DASK_ADDRESS")
    if address:
        return {"existing": {"address": address}}
    workers = int(os.environ.get("ANALOGY_DASK_WORKERS", "2"))
    return {"local": {"n_workers": workers, "threads_per_worker": 1, "processes": True,
                      "resources": {DASK_GPU_RESOURCE: 1}, "dashboard_address": None}}


def executor_def(name: str | None = None) -> dg.ExecutorDefinition | None:
    """The executor `name` (or `$ANALOGY_EXECUTOR`) names; None = Dagster's default."""
    name = executor_name(name)
    if name is None:
        return None
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "dask":
        return dask_executor().configured({"cluster": dask_cluster_config()}, name="dask")
    from dagster_k8s import k8s_job_executor  # its settings come from the run launcher and run config

    return k8s_job_executor


def dask_executor() -> dg.ExecutorDefinition:
    """dagster-dask's executor (its config schema, cluster set-up, worker function and resource
    tags), with one repair: Dask ≥ 2025 walks every tuple argument of `Client.submit`, namedtuples
    included, looking for futures, and the run of a job with pools carries a Dagster `@record`
    (RunOpConcurrency) that refuses iteration, so upstream's submit fails before any step runs
    ("Iteration is not allowed on `@record` RunOpConcurrency"). Here each step's arguments travel
    in one opaque object (and its events come back in one, which also spares Dask's sizeof warnings
    on Dagster's events). Task keys also carry the run id, so two runs of the job can share a cluster."""
    from dagster._core.definitions.executor_definition import executor
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

    @executor(name="dask", config_schema=upstream.config_schema, requirements=upstream.get_requirements(None))
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
