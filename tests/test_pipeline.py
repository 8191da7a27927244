"""The Dagster pipeline end to end on small partitions, into temporary homes,
asserting on the files it writes."""

import json
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest
from makers import ip2p_rows, write_hub_parquet, write_manifest

from evaluation.presentation.views import query
from orchestration.materialize import materialize_partition

TEST_DATA = Path(__import__("os").environ["ANALOGY_TEST_DATA"])


def files_under(home: Path) -> list[str]:
    """Every file the pipeline wrote (Dagster's own instance excluded)."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and "dagster" not in p.parts)


def rows(home: Path, table: str, partition: str) -> list[dict]:
    return pq.read_table(home / "tables" / table / f"dataset={partition}" / "part-0.parquet").to_pylist()


def run(partition: str, home: Path):
    result = materialize_partition(partition, str(home), methods=["no_edit"])
    failures = [e.step_key for e in result.all_events if e.is_step_failure]
    assert result.success, f"failed steps: {failures}"
    return result


@pytest.fixture(scope="module")
def toy_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("toy-home")
    result = run("toy", home)
    return home, result


def test_toy_partition_writes_tables_blobs_views_and_report(toy_home):
    home, result = toy_home
    assert len(rows(home, "triplets", "toy")) == 4
    generations = rows(home, "generations", "toy")
    assert [g["method"] for g in generations] == ["no_edit"] * 4 and not any(g["error"] for g in generations)
    for g in generations:
        assert (home / "blobs" / "png" / f"{g['b_prime_hash']}.png").exists()
    metrics = rows(home, "metrics", "toy")
    by_name = {}
    for m in metrics:
        by_name.setdefault(m["metric"], []).append(m["value"])
    assert {"clip_direction", "clip_text_direction", "clip_gt_cosine", "gt_psnr"} <= set(by_name)
    assert by_name["clip_direction"] == [0.0] * 4  # B′ = B has no direction at all
    # toy ground truth read by the judge: B′ = B keeps B (judge errors aside) and never shows the change
    assert by_name["judge_target"] == [0.0] * 4 and sum(by_name["judge_keep"]) >= 3
    _, board = query(home / "analogy.duckdb", "SELECT method, metric, n FROM leaderboard WHERE dataset = 'toy'")
    assert ("no_edit", "clip_direction", 4) in board
    page = (home / "reports" / "dataset=toy" / "index.html").read_text()
    assert "no_edit" in page and "toy-s0-00003" in page and (home / "reports/dataset=toy/scores.png").exists()
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_materialising_twice_leaves_the_same_rows_and_files(toy_home, tmp_path):
    home, _ = toy_home
    before = files_under(home), {t: len(rows(home, t, "toy")) for t in ("triplets", "generations", "metrics")}
    run("toy", home)
    after = files_under(home), {t: len(rows(home, t, "toy")) for t in ("triplets", "generations", "metrics")}
    assert after == before
    _, count = query(home / "analogy.duckdb", "SELECT count(*) FROM generations")
    assert count == [(4,)]


def test_sql_command_answers_read_only(toy_home, capsys):
    from orchestration.cli import main

    home, _ = toy_home
    assert main(["sql", "select count(*) as n from generations", "--home", str(home)]) == 0
    assert capsys.readouterr().out.split() == ["n", "-", "4"]
    assert main(["sql", "--home", str(home), "--format", "json",
                 "select method, metric, n from leaderboard where metric = 'clip_direction' and category = 'all'"]) == 0
    assert json.loads(capsys.readouterr().out) == {"method": "no_edit", "metric": "clip_direction", "n": 4}
    assert main(["sql", "create table x (i int)", "--home", str(home)]) == 1  # read-only
    assert "read-only" in capsys.readouterr().err
    # the verdict's tables answer on any home, with no rows where there is nothing to judge (one method here)
    for table in ("win_rates", "rankings", "judge_quality", "judge_agreement", "survey_results"):
        assert main(["sql", f"select count(*) as n from {table}", "--home", str(home)]) == 0
        assert capsys.readouterr().out.split() == ["n", "-", "0"], table


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 'junk' AS x) TO '{part}'",
    "COPY (SELECT 1 AS x) TO '{part}' (FORMAT parquet)",
    "EXPORT DATABASE '{tmp}/exported'",
    "ATTACH '{tmp}/other.duckdb' AS other",
    "SET threads = 1",
    "INSTALL httpfs",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{tmp}/*.parquet')",
    "SELECT 1; SELECT 2",
    "CREATE TABLE x AS SELECT 1",
    "EXPLAIN ANALYZE COPY (SELECT 'gone' AS junk) TO '{part}' (FORMAT parquet)",
    "EXPLAIN ANALYZE COPY (SELECT 'more' AS junk) TO '{part1}' (FORMAT parquet)",
    "/* plan */ explain (format json, analyse) copy (select 1 as x) to '{part1}'",
    "EXPLAIN ANALYZE SELECT count(*) FROM generations",
    "EXPLAIN COPY (SELECT 1 AS x) TO '{part1}'",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
])
def test_sql_refuses_anything_but_reading_the_tables(toy_home, tmp_path, capsys, sql):
    from orchestration.cli import main

    home, _ = toy_home
    part = home / "tables" / "generations" / "dataset=toy" / "part-0.parquet"
    before = part.read_bytes()
    sql = sql.format(part=part, part1=part.with_name("part-1.parquet"), tmp=tmp_path)
    assert main(["sql", sql, "--home", str(home)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("analogy sql: "), err
    assert part.read_bytes() == before and not list(tmp_path.iterdir())  # nothing written anywhere
    assert [p.name for p in part.parent.iterdir()] == ["part-0.parquet"]
    assert main(["sql", "SELECT count(*) AS n FROM generations", "--home", str(home)]) == 0
    assert capsys.readouterr().out.split() == ["n", "-", "4"]


def test_sql_plans_and_descriptions_are_reads_and_the_connection_itself_cannot_write(toy_home, capsys):
    from evaluation.presentation.views import sealed_connection
    from orchestration.cli import main

    home, _ = toy_home
    for sql in ("EXPLAIN SELECT count(*) FROM generations", "/* plan */ EXPLAIN (FORMAT json) FROM metrics",
                "DESCRIBE generations", "SUMMARIZE metrics", "SHOW TABLES", "FROM leaderboard LIMIT 1"):
        assert main(["sql", sql, "--home", str(home)]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.strip()
    # a statement that got past the parsed check would still find no file it may write or read
    part = home / "tables" / "generations" / "dataset=toy" / "part-0.parquet"
    before = part.read_bytes()
    with sealed_connection(home / "tables", ["generations"]) as con:
        assert con.execute("SELECT count(*) FROM generations").fetchall() == [(4,)]
        for sql in (f"COPY (SELECT 1 AS x) TO '{part}' (FORMAT parquet)", f"SELECT * FROM read_parquet('{part}')",
                    "SET enable_external_access = true"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
    assert part.read_bytes() == before


def test_a_copied_or_moved_home_answers_from_its_own_tables(toy_home, tmp_path, capsys):
    import shutil

    from orchestration.cli import main
    from orchestration.storage import Store

    home, _ = toy_home
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    store = Store(copy)
    store.write_table("generations", "toy", store.read_table("generations", "toy")[:1])  # change the copy only
    count = "SELECT count(*) AS n FROM generations"
    assert main(["sql", count, "--home", str(copy)]) == 0 and capsys.readouterr().out.split()[-1] == "1"
    assert main(["sql", count, "--home", str(home)]) == 0 and capsys.readouterr().out.split()[-1] == "4"
    assert query(copy / "analogy.duckdb", count)[1] == [(1,)]  # the copy's file is rebuilt for other clients
    moved = tmp_path / "moved"
    shutil.move(copy, moved)
    assert main(["sql", count, "--home", str(moved)]) == 0 and capsys.readouterr().out.split()[-1] == "1"


def test_a_hostile_manifest_fails_row_by_row(tmp_path, capsys):
    """[1,2,3], null, a NUL byte, Latin-1 bytes, a blank RGBA and an all-NaN TIFF: one error row
    each; every good row is generated (U+2028 and U+0085 stay inside their row's text), and the demo
    on the partition exits 0."""
    from makers import write_hostile_manifest

    from orchestration.cli import main

    expected = write_hostile_manifest(TEST_DATA / "hostile")
    run("hostile", tmp_path)
    triplets = {t["triplet_id"]: t for t in rows(tmp_path, "triplets", "hostile")}
    assert set(triplets) == set(expected)
    for triplet_id, want in expected.items():
        error = triplets[triplet_id]["error"]
        assert (error is None) if want == "ok" else (want in error and "\n" not in error), (triplet_id, error)
    assert triplets["separators"]["instruction"] == "make it\u2028blue\u0085now"
    generated = {g["triplet_id"] for g in rows(tmp_path, "generations", "hostile") if not g["error"]}
    assert generated == {t for t, want in expected.items() if want == "ok"}
    assert main(["demo", "--partition", "hostile", "--methods", "no_edit", "--home", str(tmp_path / "demo"),
                 "--quiet"]) == 0, capsys.readouterr().err


def test_manifest_partition_bad_rows_become_error_rows(tmp_path):
    expected = write_manifest(TEST_DATA / "manifest")
    run("mixed", tmp_path)
    triplets = {t["triplet_id"]: t for t in rows(tmp_path, "triplets", "mixed")}
    assert set(triplets) == set(expected)
    for triplet_id, want in expected.items():
        if want == "ok":
            assert triplets[triplet_id]["error"] is None
        else:
            assert want in triplets[triplet_id]["error"]
    generated = {g["triplet_id"] for g in rows(tmp_path, "generations", "mixed") if not g["error"]}
    assert generated == {"good", "repaired"}  # the other triplets complete; bad ones are not attempted
    assert "palette" in triplets["repaired"]["notes"]
    page = (tmp_path / "reports" / "dataset=mixed" / "index.html").read_text()
    assert "escapes the manifest folder" in page


def test_shards_and_hub_partitions(tmp_path):
    write_hub_parquet(TEST_DATA / "hub" / "ip2p.parquet", "instructpix2pix", ip2p_rows())
    for key in ("toyshard.000", "toyshard.001", "ip2p"):
        run(key, tmp_path)
    assert len(rows(tmp_path, "triplets", "toyshard.000")) == 4 and len(rows(tmp_path, "triplets", "toyshard.001")) == 2
    assert len(rows(tmp_path, "generations", "ip2p")) == 4
    _, board = query(tmp_path / "analogy.duckdb",
                     "SELECT dataset, n FROM leaderboard WHERE metric = 'clip_direction' AND category = 'all' "
                     "ORDER BY dataset")
    assert board == [("ip2p", 4), ("toyshard", 6)]  # shards pool into their dataset


FAST_DIA = "dia[cond_steps=2;lbfgs_iterations=1;lbfgs_max_iter=2]"
FAST_DI = "difference_inversion[steps=5;num_steps=10;inversion_steps=9]"


def _cache_stats(result, asset: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(asset)
    return materialization.metadata["cache"].value


def test_dia_and_di_run_through_the_disk_cache_and_generations_reuses_it(tmp_path):
    """DIA and DI in the pipeline: every row without error; D̃ is stored once (by diff_tokens, in the
    cache) and re-materialising generations alone recomputes no B′, D̃, prompt or DIA estimate."""
    import shutil

    methods = ["no_edit", FAST_DIA, FAST_DI]
    result = materialize_partition("toyshard.001", str(tmp_path), methods=methods)
    assert result.success
    generations = rows(tmp_path, "generations", "toyshard.001")
    assert sorted({g["method"] for g in generations}) == sorted(methods)
    assert len(generations) == 6 and not [g["error"] for g in generations if g["error"]]
    tokens = rows(tmp_path, "diff_tokens", "toyshard.001")
    assert len(tokens) == 2 and all((tmp_path / "blobs/cache/diff_tokens" / f"{t['tokens_key']}.safetensors").exists()
                                    for t in tokens)
    assert _cache_stats(result, "diff_tokens")["diff_tokens"] == {"computed": 2, "reused": 0}
    first = _cache_stats(result, "generations")
    assert first["diff_tokens"] == {"computed": 0, "reused": 2}  # generations read what diff_tokens stored
    assert first["dia_conditioning"]["computed"] == 6 and first["dia_noise"]["computed"] == 2
    assert not (tmp_path / "blobs" / "tensors").exists()  # D̃ is stored once, not also as a tensor blob
    # the pairwise toy judge: every pair of the partition's methods, each asked twice in both orders
    judged = rows(tmp_path, "judgements", "toyshard.001")
    pairs = {tuple(sorted(p)) for p in ((FAST_DI, "no_edit"), (FAST_DI, FAST_DIA), (FAST_DIA, "no_edit"))}
    assert len(judged) == 3 * 2 * 2 and {(j["method"], j["opponent"]) for j in judged} == pairs
    assert {(j["triplet_id"], j["method"], j["opponent"], j["ask"]) for j in judged} == {
        (t, *p, a) for t in {g["triplet_id"] for g in generations} for p in pairs for a in (1, 2)}
    assert all(j["shown_first"] != k["shown_first"] for j in judged for k in judged
               if (j["triplet_id"], j["method"], j["opponent"]) == (k["triplet_id"], k["method"], k["opponent"])
               and j["ask"] != k["ask"])
    assert not [j["error"] for j in judged if j["error"]] and all(j["consistent"] for j in judged)
    columns, rates = query(tmp_path / "analogy.duckdb", "SELECT opponent, pairs, wins + losses + ties, "
                           "inconsistent, inconsistency_rate, ci_low <= win_rate AND win_rate <= ci_high "
                           "FROM win_rates WHERE method = ? AND category = 'all' ORDER BY opponent", [FAST_DI])
    assert rates == sorted([(FAST_DIA, 2, 2, 0, 0.0, True), ("no_edit", 2, 2, 0, 0.0, True)])
    page = (tmp_path / "reports" / "dataset=toyshard.001" / "index.html").read_text()
    win_table = page.split('id="win-rates"', 1)[1].split("</table>", 1)[0]
    assert win_table.count("<tr") == 1 + 6  # the report: a header, then each of the 3 pairs from both sides

    shutil.rmtree(tmp_path / "blobs" / "memo", ignore_errors=True)  # the wave-1 cache: gone, nothing depends on it
    again = materialize_partition("toyshard.001", str(tmp_path), methods=methods,
                                  selection=[dg.AssetKey("generations")])
    assert again.success
    stats = _cache_stats(again, "generations")
    assert all(counts["computed"] == 0 for counts in stats.values()), stats
    # B′ itself is reused (same inputs, config, seed, profile): no method runs, so no D̃ is even read
    assert _generation_counts(again) == {"computed": 0, "reused": 6, "kept from earlier runs": 0}
    assert [g["b_prime_hash"] for g in rows(tmp_path, "generations", "toyshard.001")] == [
        g["b_prime_hash"] for g in generations]  # same seed, same bytes
    # judging again asks nothing: every pair's B′, seed and judge are unchanged
    rejudged = materialize_partition("toyshard.001", str(tmp_path), methods=methods,
                                     selection=[dg.AssetKey("judgements")])
    (materialization,) = rejudged.asset_materializations_for_node("judgements")
    assert (materialization.metadata["pairs asked"].value, materialization.metadata["pairs reused"].value) == (0, 6)
    assert rows(tmp_path, "judgements", "toyshard.001") == judged
    # a run without DI keeps the D̃ rows (and captions) of the runs before it
    captions = rows(tmp_path, "captions", "toyshard.001")
    assert materialize_partition("toyshard.001", str(tmp_path), methods=["no_edit"]).success
    assert rows(tmp_path, "diff_tokens", "toyshard.001") == tokens and captions
    assert rows(tmp_path, "captions", "toyshard.001") == captions


FAST_VISII = "visii[steps=5;pez_steps=5;num_steps=4]"


def test_visii_trains_each_pair_once_in_its_own_asset_and_generations_applies_it(tmp_path):
    """VISII in the pipeline: visii_instructions trains every distinct (A, A′) into the disk cache with
    its curves (one row per pair), its finiteness check passes, and generations only applies them."""
    result = materialize_partition("toyshard.001", str(tmp_path), methods=["no_edit", FAST_VISII])
    assert result.success
    learned = rows(tmp_path, "visii_instructions", "toyshard.001")
    assert len(learned) == 2 and not [r["error"] for r in learned if r["error"]]
    for r in learned:
        assert (tmp_path / "blobs/cache/visii_instruction" / f"{r['instruction_key']}.safetensors").exists()
        curve = json.loads(r["curve"])
        assert len(curve["mse"]) == len(curve["clip"]) == 5 and r["best_mse"] == min(curve["mse"])
        assert r["init_text"] and r["variant"] == FAST_VISII
    assert _cache_stats(result, "visii_instructions")["visii_instruction"] == {"computed": 2, "reused": 0}
    assert _cache_stats(result, "generations")["visii_instruction"] == {"computed": 0, "reused": 2}
    generations = rows(tmp_path, "generations", "toyshard.001")
    assert len(generations) == 4 and not [g["error"] for g in generations if g["error"]]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["instruction_key_finite"] is True
    # a run without VISII keeps the learned instructions of the one before
    materialize_partition("toyshard.001", str(tmp_path), methods=["no_edit"])
    assert rows(tmp_path, "visii_instructions", "toyshard.001") == learned


def _generation_counts(result) -> dict:
    (materialization,) = result.asset_materializations_for_node("generations")
    return {k: materialization.metadata[k].value for k in ("computed", "reused", "kept from earlier runs")}


def test_a_new_method_on_a_materialised_partition_runs_alone(tmp_path):
    """Adding a method to a partition computes only that method's B′; the other methods' rows stay
    (in generations, metrics, the leaderboard and the report), and a rerun of all computes nothing."""
    first = materialize_partition("toyshard.001", str(tmp_path), methods=["no_edit", "sdedit"])
    assert first.success and _generation_counts(first) == {"computed": 4, "reused": 0, "kept from earlier runs": 0}
    before = {(g["triplet_id"], g["method"]): g for g in rows(tmp_path, "generations", "toyshard.001")}

    added = materialize_partition("toyshard.001", str(tmp_path), methods=["differential_diffusion"])
    assert added.success and _generation_counts(added) == {"computed": 2, "reused": 0, "kept from earlier runs": 4}
    after = {(g["triplet_id"], g["method"]): g for g in rows(tmp_path, "generations", "toyshard.001")}
    assert {m for _, m in after} == {"no_edit", "sdedit", "differential_diffusion"}
    assert all(after[k] == before[k] for k in before)  # untouched, run id included
    assert {g["run_id"] for k, g in after.items() if k[1] == "differential_diffusion"} == {added.run_id}
    assert {m["method"] for m in rows(tmp_path, "metrics", "toyshard.001")} == {m for _, m in after}
    _, board = query(tmp_path / "analogy.duckdb", "SELECT DISTINCT method FROM leaderboard")
    assert {m for (m,) in board} == {m for _, m in after}
    assert "differential_diffusion" in (tmp_path / "reports/dataset=toyshard.001/index.html").read_text()
    # the judge: the first run's pair is kept as it was, and only the pairs with the new method are asked
    (judging,) = added.asset_materializations_for_node("judgements")
    assert {k: judging.metadata[k].value for k in ("pairs asked", "pairs reused", "pairs kept")} == {
        "pairs asked": 4, "pairs reused": 2, "pairs kept": 0}
    _, pairs = query(tmp_path / "analogy.duckdb", "SELECT method, opponent, pairs FROM win_rates "
                     "WHERE category = 'all' AND method < opponent ORDER BY ALL")
    assert pairs == [("differential_diffusion", "no_edit", 2), ("differential_diffusion", "sdedit", 2),
                     ("no_edit", "sdedit", 2)]
    # one ranking: sdedit and differential_diffusion read the toy triplets' instruction, so they are privileged
    # and ranked only in the pool of every method; no_edit alone has no example-only opponent to rank against
    _, ranked = query(tmp_path / "analogy.duckdb", "SELECT pool, method, privileged, ci_low <= strength AND "
                      "strength <= ci_high, rank_low <= rank AND rank <= rank_high FROM rankings "
                      "WHERE category = 'all' ORDER BY ALL")
    assert ranked == [("all", "differential_diffusion", True, True, True), ("all", "no_edit", False, True, True),
                      ("all", "sdedit", True, True, True)]
    _, flags = query(tmp_path / "analogy.duckdb", "SELECT DISTINCT method, privileged FROM leaderboard ORDER BY ALL")
    assert flags == [("differential_diffusion", True), ("no_edit", False), ("sdedit", True)]
    # per kind of edit: the toy world's changed attribute of each triplet, beside the whole partition
    categories = {t["category"] for t in rows(tmp_path, "triplets", "toyshard.001")}
    assert categories <= {"size", "colour", "shape", "background"} and len(categories) == 2
    for table in ("leaderboard", "win_rates", "rankings"):
        _, found = query(tmp_path / "analogy.duckdb", f"SELECT DISTINCT category FROM {table}")
        assert {c for (c,) in found} == categories | {"all"}, table
    # cost: seconds per triplet and peak memory for every method, beside its scores
    _, cost = query(tmp_path / "analogy.duckdb", "SELECT method, metric, n, mean > 0 FROM leaderboard WHERE "
                    "category = 'all' AND metric IN ('seconds_per_task', 'peak_memory_mb') ORDER BY ALL")
    assert cost == [(m, c, 2, True) for m in ("differential_diffusion", "no_edit", "sdedit")
                    for c in ("peak_memory_mb", "seconds_per_task")]

    everything = materialize_partition("toyshard.001", str(tmp_path),
                                       methods=["no_edit", "sdedit", "differential_diffusion"])
    assert _generation_counts(everything) == {"computed": 0, "reused": 6, "kept from earlier runs": 0}
    assert {k: g["b_prime_hash"] for k, g in after.items()} == {
        (g["triplet_id"], g["method"]): g["b_prime_hash"] for g in rows(tmp_path, "generations", "toyshard.001")}
