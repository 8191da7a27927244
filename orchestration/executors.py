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
        from orchestration.dask_executor import dask_executor

        return dask_executor().configured({"cluster": dask_cluster_config()}, name="dask")
    from dagster_k8s import k8s_job_executor  # its settings come from the run launcher and run config

    return k8s_job_executor
