"""The code location loads, has the graph the docs describe, and Dagster's own validation passes."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import defs

ROOT = Path(__file__).resolve().parent.parent
CHAIN = ["triplets", "generations", "metrics", "leaderboard"]


def test_graph_has_the_pipeline_chain_and_every_asset_computes():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(CHAIN) | {"report"} <= keys
    for upstream, downstream in zip(CHAIN, CHAIN[1:]):
        assert dg.AssetKey(upstream) in graph.get(dg.AssetKey(downstream)).parent_keys or \
            dg.AssetKey(upstream) in graph.upstream_key_iterator(dg.AssetKey(downstream)), (upstream, downstream)
    assert all(graph.get(k).is_executable for k in graph.get_all_asset_keys())  # no placeholder nodes


def test_partitions_schedule_and_job():
    job = defs.resolve_job_def("analogy_job")
    assert job.partitions_def.get_partition_keys() == ["toy", "toyshard.000", "toyshard.001", "mixed", "ip2p",
                                                      "hostile", "s3mixed", "s3bench"]
    schedule = defs.resolve_schedule_def("all_datasets_weekly")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    generations = defs.resolve_assets_def("generations")
    assert generations.op.pool == "gpu"
    # a model-loading step asks Kubernetes and Dask for a card; a CPU step does not
    assert "nvidia.com/gpu" in str(generations.op.tags["dagster-k8s/config"])
    assert "dagster-dask/resource_requirements" in generations.op.tags
    cpu_tags = set(defs.resolve_assets_def("triplets").op.tags)
    assert not {"dagster-k8s/config", "dagster-dask/resource_requirements"} & cpu_tags


def test_the_scheduled_job_selects_every_asset():
    job = defs.resolve_job_def("analogy_job")
    every = set(defs.resolve_asset_graph().get_all_asset_keys())
    assert {"captions", "pez_prompts", "clip_deltas", "diff_tokens", "visii_instructions"} <= {
        k.to_user_string() for k in every}
    assert set(job.asset_layer.selected_asset_keys) == every


def test_every_method_setting_is_one_resource_read_by_every_method_asset():
    """No asset has a config of its own for methods: captions … generations read the `methods` resource."""
    for name in ("captions", "pez_prompts", "clip_deltas", "diff_tokens", "visii_instructions", "generations"):
        assets_def = defs.resolve_assets_def(name)
        assert "methods" in assets_def.required_resource_keys, name
        assert not getattr(assets_def.op.config_schema.as_field().config_type, "fields", None), name


def test_a_wrong_method_fails_when_the_resource_is_made():
    from orchestration.resources import MethodsResource

    with pytest.raises(Exception, match="unknown method 'dai'"):
        MethodsResource(methods=["no_edit", "dai"])
    with pytest.raises(Exception, match="no setting"):
        MethodsResource(methods=["sdedit[strenght=0.5]"])


@pytest.mark.slow
@pytest.mark.parametrize("command", [["dagster", "definitions", "validate", "-w", "workspace.yaml"],
                                     ["dg", "check", "defs"]])
def test_dagster_validates_the_code_location(command, tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    exe = Path(sys.executable).parent / command[0]
    result = subprocess.run([str(exe), *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_code_location_reads_no_datasets_file(tmp_path):
    """The datasets file is read when the partitions are first needed, not at import: a broken one
    cannot stop an import, and its error is one clear line when the keys are asked for."""
    code = ("import orchestration.definitions\nfrom orchestration.partitions import dataset_partitions\n"
            "print('imported')\ndataset_partitions.get_partition_keys()")
    env = {**os.environ, "ANALOGY_DATASETS": str(tmp_path / "missing.yaml")}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "imported"
    assert "missing.yaml does not exist" in done.stderr.strip().splitlines()[-1]


def test_a_wrong_encoder_or_profile_in_run_config_fails_before_any_work():
    """A typo in the launchpad is a config error naming the choices, not a silently skipped encoder."""
    import pydantic
    import pytest

    from orchestration.assets import MetricsConfig
    from orchestration.resources import ModelsResource

    with pytest.raises(pydantic.ValidationError, match="clip, dinov2"):
        MetricsConfig(encoders=["clip", "clpi"])
    with pytest.raises(pydantic.ValidationError, match="toy"):
        ModelsResource(profile="sd99")
    assert MetricsConfig().encoders == ["clip", "dinov2"]
    from orchestration.judge_assets import JudgementsConfig

    with pytest.raises(pydantic.ValidationError, match="'toy', 'chat' or 'vlm'"):
        JudgementsConfig(judge="gpt4")
    with pytest.raises(pydantic.ValidationError, match="unknown method 'difference_inversoin'"):
        JudgementsConfig(reference="difference_inversoin")
    with pytest.raises(pydantic.ValidationError, match="unknown method 'no_edt'"):
        JudgementsConfig(methods=["no_edit", "no_edt"])
    assert JudgementsConfig(reference="difference_inversion", methods=["no_edit", "sdedit[strength=0.5]"]).methods
    # and in the run config the UI or the schedule launches: refused before any step runs
    job = defs.resolve_job_def("analogy_job")
    valid = dg.validate_run_config(job, {"ops": {"judgements": {"config": {"judge": "chat"}}}})
    assert valid["ops"]["judgements"]["config"]["judge"] == "chat"
    with pytest.raises(dg.DagsterInvalidConfigError, match="judge"):
        dg.validate_run_config(job, {"ops": {"judgements": {"config": {"judge": "gpt4"}}}})
