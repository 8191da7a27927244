"""The Dask repair (orchestration.dask_executor) against upstream dagster-dask, on a two-op job with a
pool, on an in-process Dask cluster: upstream still fails (the day it runs, this test says the repair
can go), and the repaired executor runs the job."""

import dagster as dg
import pytest

pytest.importorskip("dagster_dask")

from dagster_dask import dask_executor as upstream_executor  # noqa: E402

from orchestration.dask_executor import dask_executor  # noqa: E402

CLUSTER = {"cluster": {"local": {"n_workers": 1, "threads_per_worker": 1, "processes": False,
                                 "dashboard_address": None}}}


@dg.op(pool="gpu")
def one() -> int:
    return 1


@dg.op
def plus_one(x: int) -> int:
    return x + 1


@dg.job(executor_def=upstream_executor)
def upstream_job():
    plus_one(one())


@dg.job(executor_def=dask_executor())
def repaired_job():
    plus_one(one())


def run(job, tmp_path) -> tuple[bool, dict, list[str]]:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with dg.execute_job(dg.reconstructable(job), instance, run_config={"execution": {"config": CLUSTER}},
                            raise_on_error=False) as result:
            outputs = {step: result.output_for_node(step) for step in ("one", "plus_one")} if result.success else {}
            failures = [str(e.event_specific_data) for e in result.all_events if e.is_failure]
            return result.success, outputs, failures


def test_upstream_dagster_dask_still_fails_on_a_job_with_pools(tmp_path):
    success, _, failures = run(upstream_job, tmp_path)
    assert not success, ("upstream dagster-dask now runs a job with pools: delete orchestration/dask_executor.py "
                         "and use dagster_dask.dask_executor in orchestration/executors.py")
    assert any("Iteration is not allowed" in f for f in failures), failures


def test_the_repaired_executor_runs_the_job(tmp_path):
    success, outputs, failures = run(repaired_job, tmp_path)
    assert success, failures
    assert outputs == {"one": 1, "plus_one": 2}
