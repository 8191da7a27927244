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
    assert job.partitions_def.get_partition_keys() == ["toy", "toyshard.000", "toyshard.001", "mixed", "ip2p"]
    schedule = defs.resolve_schedule_def("all_datasets_weekly")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    generations = defs.resolve_assets_def("generations")
    assert generations.op.pool == "gpu"


@pytest.mark.slow
@pytest.mark.parametrize("command", [["dagster", "definitions", "validate", "-w", "workspace.yaml"],
                                     ["dg", "check", "defs"]])
def test_dagster_validates_the_code_location(command, tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    exe = Path(sys.executable).parent / command[0]
    result = subprocess.run([str(exe), *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
