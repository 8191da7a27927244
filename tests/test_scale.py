"""Beyond one machine: the pipeline on Dask (a LocalCluster of 2 worker processes) writing to an S3
bucket (moto's server on 127.0.0.1), datasets read from the bucket, and the Kubernetes Job specs
of the deploy files, rendered with dagster-k8s' own builders."""

import os
from pathlib import Path

import boto3
import dagster as dg
import pytest
import torch
import yaml
from makers import write_manifest

from orchestration.cli import main
from orchestration.materialize import materialize_partition

TEST_DATA = Path(os.environ["ANALOGY_TEST_DATA"])
DATA_BUCKET = "analogy-test-data"  # the bucket of tests/datasets.yaml's s3 datasets
SECRET = "not-a-real-secret-9f3c1e"
DEPLOY = Path(__file__).resolve().parent.parent / "orchestration" / "deploy"


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on 127.0.0.1 and the standard AWS environment pointing at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    client = boto3.client("s3")
    try:
        yield client
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def objects(client, bucket: str, prefix: str = "") -> dict[str, str]:
    """Every object under the prefix: key → ETag."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found |= {o["Key"]: o["ETag"] for o in page.get("Contents", [])}
    return found


def sql_rows(home: str, capsys, query: str) -> list[str]:
    capsys.readouterr()
    assert main(["sql", query, "--home", home, "--format", "csv"]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.splitlines()


METHODS = ["no_edit", "sdedit"]


def test_dask_run_on_s3_matches_a_local_run_and_reruns_in_place(s3, tmp_path, capsys, monkeypatch):
    s3.create_bucket(Bucket="results")
    home = "s3://results/analogy"
    with dg.instance_for_test() as instance:
        result = materialize_partition("toy", home, methods=METHODS, instance=instance, executor="dask")
        assert result.success, [e.event_specific_data for e in result.all_events if e.is_step_failure]
        # every step ran as a Dask task, in a worker process, not in this one
        assert {e.pid for e in result.all_events if e.is_step_success} - {os.getpid()}
        logs = " ".join(str(e.message) + str(e.dagster_event) for e in instance.all_logs(result.run_id))
    # the local run at the workers' thread count (Dask's nanny starts each with OMP_NUM_THREADS=1):
    # PyTorch's CPU reductions change their summation order with the thread count, and on this toy
    # partition that moves one pixel of one sdedit B′ by one level (measured at 2 threads against 1)
    local = tmp_path / "local"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert materialize_partition("toy", str(local), methods=METHODS, executor="in_process").success
    finally:
        torch.set_num_threads(threads)

    query = "select method, count(*) as n from generations group by method order by method"
    assert sql_rows(home, capsys, query) == sql_rows(str(local), capsys, query) == ["method,n", "no_edit,4",
                                                                                   "sdedit,4"]
    same = ("select triplet_id, method, b_prime_hash from generations order by all")
    assert sql_rows(home, capsys, same) == sql_rows(str(local), capsys, same)  # the same B′, pixel for pixel

    stored = objects(s3, "results")
    keys = {k.removeprefix("analogy/") for k in stored}
    assert {"analogy.duckdb", "reports/dataset=toy/index.html", "tables/generations/dataset=toy/part-0.parquet",
            "tables/metrics/dataset=toy/part-0.parquet"} <= keys
    assert not any(".tmp" in k for k in keys)  # whole-object PUTs, no temporary names
    # credentials come from the environment and go nowhere: not into the DuckDB file, not into the run's logs
    assert SECRET.encode() not in s3.get_object(Bucket="results", Key="analogy/analogy.duckdb")["Body"].read()
    assert SECRET not in logs

    # the re-run as a user makes it: the demo, on the executor the environment names
    monkeypatch.setenv("ANALOGY_EXECUTOR", "dask")
    monkeypatch.setenv("ANALOGY_HOME", home)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    capsys.readouterr()
    assert main(["demo", "--home", home, "--methods", ",".join(METHODS), "--quiet"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "judge_joint" in printed and "reports/dataset=toy/index.html" in printed
    assert set(objects(s3, "results")) == set(stored)  # the same objects, replaced in place


def test_datasets_on_s3_keep_the_local_rules(s3, tmp_path):
    """A manifest and a benchmark file on the bucket read like local ones: bad rows fail alone and a
    path that climbs out of the manifest's prefix is refused."""
    from models.toy.benchmark import write_benchmark
    from orchestration.storage import Store

    s3.create_bucket(Bucket=DATA_BUCKET)
    folder = tmp_path / "data" / "manifest"
    expected = write_manifest(folder)
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), DATA_BUCKET, path.relative_to(tmp_path / "data").as_posix())
    write_benchmark(tmp_path / "toy.parquet", seed=5, n=3)
    s3.upload_file(str(tmp_path / "toy.parquet"), DATA_BUCKET, "bench/toy.parquet")

    home = tmp_path / "home"
    for partition in ("s3mixed", "s3bench"):
        assert materialize_partition(partition, str(home), methods=["no_edit"]).success
    triplets = {t["triplet_id"]: t for t in Store(home).read_table("triplets", "s3mixed")}
    assert set(triplets) == set(expected)
    for triplet_id, want in expected.items():
        error = triplets[triplet_id]["error"]
        assert (error is None) if want == "ok" else (want in error), (triplet_id, error)
    assert "s3://analogy-test-data/outside.png" in triplets["escapes"]["error"]
    bench = Store(home).read_table("triplets", "s3bench")
    assert len(bench) == 3 and not any(t["error"] for t in bench)


def test_urls_with_credentials_and_unknown_executors_fail_before_any_work(tmp_path, monkeypatch, capsys):
    from orchestration.executors import executor_def

    assert main(["sql", "select 1", "--home", "s3://key:secret@results/x"]) == 2
    assert "credentials belong in the environment" in capsys.readouterr().err
    with pytest.raises(ValueError, match="choose one of in_process, multiprocess, dask, k8s"):
        executor_def("daks")
    monkeypatch.setenv("ANALOGY_EXECUTOR", "kubernetes")
    assert main(["demo", "--home", str(tmp_path), "--methods", "no_edit"]) == 2
    assert "ANALOGY_EXECUTOR='kubernetes'" in capsys.readouterr().err
    assert not (tmp_path / "tables").exists()


# --- Kubernetes ---------------------------------------------------------------------------------

def step_jobs() -> dict[str, dict]:
    """The Kubernetes Job the k8s executor would create for the `generations` step (gpu pool) and the
    `triplets` step (CPU), built as K8sStepHandler.launch_step builds it: the container context of the
    Helm values' user deployment and run launcher merged with the step's own tags, then
    construct_dagster_k8s_job."""
    from dagster._core.execution.api import create_execution_plan
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )

    from orchestration.definitions import defs

    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    context = K8sContainerContext(
        env_vars=[f"{e['name']}={e['value']}" for e in deployment["env"]],
        env_secrets=launcher.get("envSecrets", []) and [s["name"] for s in launcher["envSecrets"]],
        namespace="analogy",
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher.get("runK8sConfig", {})),
    )
    job = defs.resolve_job_def("analogy_job")
    plan = create_execution_plan(job, tags={"dagster/partition": "toy"})
    jobs = {}
    for key in ("generations", "triplets"):
        step = plan.get_step_by_key(key)
        step_context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step.tags)))
        config = DagsterK8sJobConfig(job_image=image, dagster_home="/opt/dagster/dagster_home",
                                     instance_config_map="dagster-instance", postgres_password_secret=None)
        spec = construct_dagster_k8s_job(config, args=["dagster", "api", "execute_step"], job_name=f"step-{key}",
                                         user_defined_k8s_config=step_context.run_k8s_config,
                                         component="step_worker", env_vars=[])
        jobs[key] = spec.to_dict()
    return jobs, image


def test_kubernetes_step_jobs_from_the_deploy_files():
    jobs, image = step_jobs()
    for key, job in jobs.items():
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == image
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ANALOGY_EXECUTOR"] == "k8s" and env["ANALOGY_HOME"].startswith("s3://")
        assert not any("SECRET" in name for name in env)  # credentials come from a Kubernetes Secret
        assert {"name": "analogy-aws"} in [{"name": s["secret_ref"]["name"]}
                                           for s in container["env_from"] if s.get("secret_ref")]
        limits = (container.get("resources") or {}).get("limits") or {}
        assert (limits.get("nvidia.com/gpu") == "1") == (key == "generations"), (key, limits)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install" in dockerfile and ".[scale]" in dockerfile
    from dagster._core.instance.config import dagster_instance_config

    instance, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")  # Dagster's own schema check
    assert instance["concurrency"]["pools"]["default_limit"] == 1
    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    assert "analogy-aws" in instance["run_launcher"]["config"]["env_secrets"]
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
