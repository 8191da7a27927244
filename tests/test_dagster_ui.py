"""What a user sees in the Dagster UI after `analogy demo`, read through the GraphQL API of a real
`dagster-webserver` serving the project's workspace.yaml on the demo's own instance."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(GraphQL function, home) after a demo on a 2-triplet partition, with the UI on that instance."""
    home = tmp_path_factory.mktemp("ui-home")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # the demo picks its own instance
    demo = subprocess.run([sys.executable, "-m", "orchestration.cli", "demo", "--partition", "toyshard.001",
                           "--methods", "no_edit", "--home", str(home), "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    port = _free_port()
    env |= {"DAGSTER_HOME": str(home / "dagster"), "ANALOGY_HOME": str(home)}
    server = subprocess.Popen([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
                               "-p", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def graphql(query: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a bad query: GraphQL's own message
            raise AssertionError(exc.read().decode()[:2000]) from None
        assert "errors" not in body, body["errors"]
        return body["data"]

    try:
        deadline = time.time() + 180
        while True:
            try:
                nodes = graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
                if nodes:
                    break
            except (OSError, AssertionError):
                pass
            assert time.time() < deadline and server.poll() is None, "dagster-webserver did not come up"
            time.sleep(1)
        yield graphql, home
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_asset_has_a_code_version_and_an_owner(ui):
    graphql, _ = ui
    nodes = graphql("{ assetNodes { assetKey { path } opVersion owners { ... on TeamAssetOwner { team } } } }")
    nodes = {"/".join(n["assetKey"]["path"]): n for n in nodes["assetNodes"]}
    assert {"triplets", "diff_tokens", "generations", "metrics", "leaderboard", "report"} <= set(nodes)
    assert all(n["opVersion"] for n in nodes.values()), {k: n["opVersion"] for k, n in nodes.items()}
    assert all(n["owners"] == [{"team": "analogy"}] for n in nodes.values())


def _latest_metadata(graphql, asset: str, partition: str | None = None) -> dict[str, dict]:
    partitions = f', partitions: ["{partition}"]' if partition else ""
    data = graphql(f"""{{ assetOrError(assetKey: {{path: ["{asset}"]}}) {{ ... on Asset {{
        assetMaterializations(limit: 1{partitions}) {{ metadataEntries {{ label __typename
            ... on IntMetadataEntry {{ intValue }}
            ... on TableMetadataEntry {{ table {{ records schema {{ columns {{ name }} }} }} }}
            ... on TableSchemaMetadataEntry {{ schema {{ columns {{ name type }} }} }} }} }} }} }} }}""")
    (materialization,) = data["assetOrError"]["assetMaterializations"]
    return {e["label"]: e for e in materialization["metadataEntries"]}


def test_tables_carry_the_standard_metadata_and_the_leaderboard_is_a_table(ui):
    graphql, _ = ui
    generations = _latest_metadata(graphql, "generations", "toyshard.001")
    assert generations["dagster/row_count"]["intValue"] == 2  # 2 triplets × no_edit
    columns = [c["name"] for c in generations["dagster/column_schema"]["schema"]["columns"]]
    assert {"triplet_id", "method", "config_hash", "b_prime_hash", "run_id", "error"} <= set(columns)
    assert generations["samples"]["__typename"] == "MarkdownMetadataEntry"  # the B′ sample grid
    board = _latest_metadata(graphql, "leaderboard")["leaderboard"]
    assert board["__typename"] == "TableMetadataEntry"
    assert {"method", "metric", "n", "mean", "ci95_low", "ci95_high"} <= {
        c["name"] for c in board["table"]["schema"]["columns"]}
    records = [json.loads(r) for r in board["table"]["records"]]
    joint = [r for r in records if r["metric"] == "judge_joint"]
    assert joint and all(0 <= r["ci95_low"] <= r["mean"] <= r["ci95_high"] <= 1 for r in joint)


def test_the_demo_run_is_a_named_job_and_the_instance_limits_the_gpu_pool(ui):
    graphql, _ = ui
    runs = graphql("{ runsOrError { ... on Runs { results { jobName status tags { key value } } } } }")
    (run,) = runs["runsOrError"]["results"]
    assert run["jobName"] == "analogy_job" and run["status"] == "SUCCESS"
    assert {"key": "launched_by", "value": "analogy demo"} in run["tags"]
    instance = graphql('{ instance { poolConfig { defaultPoolLimit } '
                       'concurrencyLimit(concurrencyKey: "gpu") { limit } } }')["instance"]
    assert instance["poolConfig"]["defaultPoolLimit"] == 1 and instance["concurrencyLimit"]["limit"] == 1


def test_nothing_is_stale_after_the_demo_and_a_changed_default_would_show(ui):
    graphql, _ = ui
    data = graphql('{ assetNodes(assetKeys: [{path: ["generations"]}]) { opVersion '
                   'staleStatus(partition: "toyshard.001") } }')
    (node,) = data["assetNodes"]
    assert node["staleStatus"] == "FRESH"
    from dataclasses import replace

    import ops.registry as registry
    from orchestration.metadata import code_version

    method = registry.METHODS["no_edit"]
    before = code_version("generations", runs_methods=True)
    assert before == node["opVersion"]  # the code version, as the UI calls it
    registry.METHODS["no_edit"] = replace(method, preset={"note": "changed"})
    try:
        assert code_version("generations", runs_methods=True) != before  # a new default → a new code version
    finally:
        registry.METHODS["no_edit"] = method
