"""The DuckDB file of views over the Parquet tables, and the verdict computed from them.

Each table `t` becomes a view over `tables/t/*/*.parquet` (hive partitioning):
its `shard` column is the partition key (`toy`, `ip2p.003`) and `dataset` the
dataset's name (the key without its shard number). Whenever the views are built, the verdict's
tables are computed from them (COMPUTED_TABLES; each exists on every home, empty where there is
nothing to compute), per dataset and per `category` (the triplets' kind of edit; "all" = the whole
dataset):
- `leaderboard`: mean and 95 % interval (evaluation.scoring.stats) per method × config × metric, cost
  (`seconds_per_task`, `peak_memory_mb`) included, each method marked `privileged` where its B′ were
  made with the triplet's instruction;
- `win_rates`: the pairwise judge's wins of each method over each other (evaluation.scoring.pairwise);
- `rankings`: Bradley–Terry strengths with bootstrap intervals and rank ranges (evaluation.scoring.ranking), for
  the example-only methods among themselves (pool `example_only`) and for every method (pool `all`);
- `judge_quality`, `judge_agreement`: the judge's position bias and inconsistency, and its agreement with
  the human study (evaluation.scoring.judge_quality); `survey_results`: the study's vote shares.

Tables on an object store (`s3://…/tables`) are read through their fsspec filesystem,
registered with each DuckDB connection (no DuckDB extension is downloaded, and no credential
is written anywhere: the filesystem reads them from the environment). DuckDB opens database
files only on a local disk, so there the file is built or read in a temporary folder and
uploaded or downloaded whole.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pa_dataset

from evaluation.ingestion.files import Location, atomic_write, built_in_place, is_remote, location_text
from evaluation.presentation.schemas import TABLES
from evaluation.scoring.judge_quality import AGREEMENT_COLUMNS, QUALITY_COLUMNS, judge_agreement, judge_quality
from evaluation.scoring.pairwise import ALL, WIN_RATE_COLUMNS, win_rates
from evaluation.scoring.ranking import RANKINGS_COLUMNS, rankings
from evaluation.scoring.stats import summarise
from evaluation.scoring.survey import RESULT_COLUMNS, survey_results

LEADERBOARD_COLUMNS = ("dataset", "category", "method", "metric", "config_hash", "privileged", "n", "mean",
                       "ci95_low", "ci95_high", "interval")


def leaderboard_rows(rows) -> list[dict]:
    """Mean and 95 % interval (evaluation.scoring.stats: Wilson for 0/1 scores, a bootstrap inside the data's range
    otherwise, none below its minimum n) per dataset × category × method × config × metric of `metrics` rows
    (each with its triplet's `category` and whether its B′ was `privileged`): category "all" is the whole
    dataset. Best mean first within a metric."""
    rows = list(rows)
    privileged = defaultdict(bool)
    for r in rows:
        privileged[(r["dataset"], r["method"], r["config_hash"])] |= bool(r["privileged"])
    split = [r | {"category": c} for r in rows for c in {ALL, r["category"] or ALL}]
    out = summarise(split, by=("dataset", "category", "method", "metric", "config_hash"))
    out = [r | {"privileged": privileged[(r["dataset"], r["method"], r["config_hash"])]} for r in out]
    return sorted(out, key=lambda r: (r["dataset"], r["category"] != ALL, r["category"], r["metric"], -r["mean"],
                                      r["method"]))


S, INT, F, B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
# Each B′'s category (its triplet's) and whether it was made with ground truth, beside the rows that need them.
_TRIPLET = "LEFT JOIN triplets t ON t.shard = x.shard AND t.triplet_id = x.triplet_id"
_PRIVILEGED = ("LEFT JOIN (SELECT shard, triplet_id, method, bool_or(coalesce(privileged, false)) AS privileged "
               "FROM generations GROUP BY ALL) {g} ON {g}.shard = x.shard AND {g}.triplet_id = x.triplet_id "
               "AND {g}.method = x.{column}")
JUDGEMENTS_SQL = (f"SELECT x.dataset, x.shard || '/' || x.triplet_id AS task, x.triplet_id, x.judge_id, x.method, "
                  f"x.opponent, x.ask, x.shown_first, x.choice, x.consistent, x.error, t.category, "
                  f"coalesce(g.privileged, false) AS method_privileged, "
                  f"coalesce(o.privileged, false) AS opponent_privileged FROM judgements x {_TRIPLET} "
                  f"{_PRIVILEGED.format(g='g', column='method')} {_PRIVILEGED.format(g='o', column='opponent')}")


@dataclass(frozen=True)
class Computed:
    """A table computed in Python whenever the views are built: `compute` over the rows each of `sql`
    reads (as lists of dicts), typed by `types` (a table with no files yet reads as empty)."""

    sql: tuple[str, ...]
    compute: Callable
    types: dict


# The verdict: every table below exists on every home (with no rows where there is nothing to compute).
COMPUTED_TABLES = {
    "leaderboard": Computed((f"SELECT x.dataset, x.method, x.metric, x.config_hash, x.value, t.category, "
         f"coalesce(g.privileged, false) AS privileged FROM metrics x {_TRIPLET} "
         f"{_PRIVILEGED.format(g='g', column='method')}",),
        leaderboard_rows, dict(zip(LEADERBOARD_COLUMNS, (S, S, S, S, S, B, INT, F, F, F, S)))),
    "win_rates": Computed((JUDGEMENTS_SQL,), win_rates,
                          dict(zip(WIN_RATE_COLUMNS, (S,) * 5 + (INT,) * 6 + (F,) * 4))),
    "rankings": Computed((JUDGEMENTS_SQL,), rankings,
                         dict(zip(RANKINGS_COLUMNS, (S,) * 5 + (B, INT, F, F, F, INT, INT, INT, F)))),
    "judge_quality": Computed((JUDGEMENTS_SQL,), judge_quality,
                              dict(zip(QUALITY_COLUMNS, (S, S) + (INT,) * 4 + (F, INT, INT, F, F, F)))),
    "judge_agreement": Computed(
        (JUDGEMENTS_SQL, "SELECT dataset, triplet_id, survey_id, participant, method, candidates FROM survey_answers"),
        judge_agreement, dict(zip(AGREEMENT_COLUMNS, (S, S, S, INT, INT, F, F, F, F, F, F)))),
    "survey_results": Computed(("SELECT dataset, survey_id, method, candidates FROM survey_answers",),
                               survey_results, dict(zip(RESULT_COLUMNS, (S,) * 3 + (INT,) * 2 + (F,) * 3))),
}


def _computed_table(con, name: str, table: Computed) -> list[dict]:
    """Table `name` on `con` (see Computed); returns its rows."""
    inputs = []
    for sql in table.sql:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        inputs.append([dict(zip(names, r)) for r in cursor.fetchall()])
    rows = table.compute(*inputs)
    con.register(f"{name}_rows", pa.table({c: pa.array([r[c] for r in rows], t) for c, t in table.types.items()}))
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_rows")
    con.unregister(f"{name}_rows")
    return rows


GENERATION_ERRORS_SQL = """
CREATE OR REPLACE VIEW generation_summary AS
SELECT dataset, method, config_hash, count(*) AS generations,
       count(*) FILTER (WHERE error IS NOT NULL) AS errors, avg(seconds) AS mean_seconds
FROM generations GROUP BY ALL ORDER BY ALL
"""


def table_view_sql(table: str, tables_root: Location, partition: str | None = None) -> str:
    """The view of `table` over every partition's file (or only `partition`'s); files written with fewer
    columns by an older version read as nulls in the new ones (union_by_name)."""
    folder = f"dataset={partition}" if partition else "*"
    pattern = f"{location_text(tables_root / table)}/{folder}/*.parquet".replace("'", "''")
    return _view_sql(table, f"read_parquet('{pattern}', hive_partitioning = true, hive_types = {{'dataset': VARCHAR}}, "
                            "union_by_name = true)")


def _view_sql(table: str, source: str) -> str:
    """The view of `table` over `source`, whose hive column `dataset` is the partition key."""
    return (f"CREATE OR REPLACE VIEW {table} AS SELECT * EXCLUDE (dataset), split_part(dataset, '.', 1) AS dataset, "
            f"dataset AS shard FROM {source}")


def _register_files(con, table: str, tables_root: Location) -> None:
    """View `table` over its files read by Arrow and registered as a Python object, so that `con` itself
    needs no file access; files with fewer columns read as nulls in the new ones."""
    folder = tables_root / table
    files = pa_dataset.dataset(folder.path if is_remote(folder) else str(folder), format="parquet",
                               filesystem=folder.fs if is_remote(folder) else None,
                               schema=TABLES[table].append(pa.field("dataset", S)),
                               partitioning=pa_dataset.partitioning(pa.schema([("dataset", S)]), flavor="hive"))
    con.register(f"{table}_files", files)
    con.execute(_view_sql(table, f"{table}_files"))


def _reach(con, where: Location) -> None:
    """Let connection `con` read `where`'s object store through its fsspec filesystem."""
    if is_remote(where):
        con.register_filesystem(where.fs)


def _define_views(con, tables_root: Location, tables: list[str], partition: str | None = None,
                  sealed: bool = False) -> dict[str, list[dict]]:
    """A view per table that has files (over every partition, or only `partition`), and the verdict's
    tables computed from them (COMPUTED_TABLES), on `con`: {name: rows} of the computed ones, the views'
    names with []. `sealed`: the files are read through Arrow (every partition), so `con` can then be
    denied all file access."""
    if not sealed:
        _reach(con, tables_root)
    made = {}
    for table in tables:
        if sealed:
            _register_files(con, table, tables_root)
        else:
            con.execute(table_view_sql(table, tables_root, partition))
        made[table] = []
    for table in sorted(set(TABLES) - set(tables)):  # not written yet: an empty table of its columns
        empty = TABLES[table].empty_table().append_column("dataset", pa.array([], S))
        con.register(f"{table}_empty", empty.append_column("shard", pa.array([], S)))
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table}_empty")  # kept in the file
        con.unregister(f"{table}_empty")
    if "generations" in tables:
        con.execute(GENERATION_ERRORS_SQL)
        made["generation_summary"] = []
    for name, table in COMPUTED_TABLES.items():
        made[name] = _computed_table(con, name, table)
    return made


def partition_verdict(tables_root: Location, tables: list[str], partition: str) -> dict[str, list[dict]]:
    """The verdict's tables (leaderboard, win_rates, rankings, judge quality and agreement, survey results)
    of one partition alone, computed as the DuckDB file computes them for whole datasets."""
    with duckdb.connect(":memory:") as con:
        made = _define_views(con, tables_root, tables, partition)
    return {name: rows for name, rows in made.items() if name in COMPUTED_TABLES}


def build_database(db_path: Location, tables_root: Location, tables: list[str]) -> dict[str, list[dict]]:
    """(Re)write the DuckDB file with a view per table that has files, plus the
    verdict's tables, for any DuckDB client. Built under a temporary name and renamed, so
    readers never see a half-built file (on an object store: built locally, one PUT).
    Returns {view name: rows}: the verdict's rows as computed (no query back), [] for the
    views over files. The file records the tables folder its views read (`analogy_home`),
    so a moved or copied home can tell."""
    if is_remote(db_path):
        with tempfile.TemporaryDirectory(prefix="analogy-duckdb-") as folder:
            local = Path(folder) / db_path.name
            views = build_database(local, tables_root, tables)
            atomic_write(db_path, local.read_bytes())
        return views
    with built_in_place(db_path) as tmp, duckdb.connect(str(tmp)) as con:  # a failed build leaves no .tmp/.tmp.wal
        views = _define_views(con, tables_root, tables)
        con.execute("CREATE TABLE analogy_home AS SELECT ? AS tables_root", [_root_text(tables_root)])
        con.execute("CHECKPOINT")
    return views


def _root_text(tables_root: Location) -> str:
    return location_text(tables_root if is_remote(tables_root) else tables_root.resolve())


@contextmanager
def _local(db_path: Location) -> Iterator[Path]:
    """A local path to open the database at: the file itself, or a downloaded copy."""
    if not is_remote(db_path):
        yield db_path
        return
    with tempfile.TemporaryDirectory(prefix="analogy-duckdb-") as folder:
        local = Path(folder) / db_path.name
        local.write_bytes(db_path.read_bytes())
        yield local


def database_is_current(db_path: Location, tables_root: Location, tables: list[str]) -> bool:
    """The file exists, reads `tables_root` (not a home it was copied or moved from) and has every table."""
    if not db_path.exists():
        return False
    try:
        _, root = query(db_path, "SELECT tables_root FROM analogy_home")
        _, views = query(db_path, "SELECT view_name FROM duckdb_views() WHERE NOT internal")
    except duckdb.Error:
        return False
    return root == [(_root_text(tables_root),)] and not set(tables) - {v for (v,) in views}


def query(db_path: Location, sql: str, params: list | None = None) -> tuple[list[str], list[tuple]]:
    """Run the project's own `sql` (with `?` parameters) on a read-only connection to the file:
    (column names, rows)."""
    with _local(db_path) as local, duckdb.connect(str(local), read_only=True) as con:
        _reach(con, db_path)
        return _fetched(con.execute(sql, params))


def _fetched(cursor) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of an executed statement."""
    return [d[0] for d in cursor.description] if cursor.description else [], cursor.fetchall()


class QueryRefused(ValueError):
    """A user's SQL that is not one read-only statement."""


ANALYZE = {"ANALYZE", "ANALYSE"}


def _explained(sql: str) -> str:
    """The statement an EXPLAIN shows the plan of, read from DuckDB's own tokens (comments skipped);
    QueryRefused for EXPLAIN ANALYZE, which runs its statement."""
    tokens = duckdb.tokenize(sql)
    ends = [pos for pos, _ in tokens[1:]] + [len(sql)]
    words = [(sql[pos:end].strip(), pos) for (pos, kind), end in zip(tokens, ends, strict=True)
             if kind != duckdb.token_type.comment]
    i = 1  # words[0] is EXPLAIN
    if i < len(words) and words[i][0] == "(":  # EXPLAIN (FORMAT json, ANALYZE) …
        while i < len(words) and words[i][0] != ")":
            if words[i][0].upper() in ANALYZE:
                raise QueryRefused("EXPLAIN ANALYZE runs its statement: only EXPLAIN (the plan) is allowed")
            i += 1
        i += 1
    if i < len(words) and words[i][0].upper() in ANALYZE:
        raise QueryRefused("EXPLAIN ANALYZE runs its statement: only EXPLAIN (the plan) is allowed")
    if i >= len(words):
        raise QueryRefused("EXPLAIN of nothing")
    return sql[words[i][1]:]


def _check_read_only(sql: str) -> None:
    """QueryRefused unless `sql` is one SELECT (DESCRIBE, SUMMARIZE, SHOW and FROM-first queries are
    SELECTs), or an EXPLAIN without ANALYZE of one SELECT."""
    statements = duckdb.extract_statements(sql)  # a parse error is a duckdb.Error with DuckDB's message
    if len(statements) != 1:
        raise QueryRefused(f"one statement at a time, got {len(statements)}")
    kind = statements[0].type
    if kind == duckdb.StatementType.EXPLAIN:
        inner = duckdb.extract_statements(_explained(statements[0].query))
        kind = inner[0].type if len(inner) == 1 else kind
        if kind == duckdb.StatementType.EXPLAIN:
            raise QueryRefused("EXPLAIN of one SELECT only")
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefused(f"only SELECT queries are allowed (read-only), got {kind.name}")


@contextmanager
def sealed_connection(tables_root: Location, tables: list[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory database whose views read `tables_root`'s files through Arrow (so a copied or
    moved home answers from its own tables), with every file access of DuckDB's own denied and the
    configuration locked: no COPY, EXPORT, ATTACH, INSTALL or SET, no file read or written by a query."""
    with duckdb.connect(":memory:") as con:
        _define_views(con, tables_root, tables, sealed=True)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con


def user_query(tables_root: Location, tables: list[str], sql: str) -> tuple[list[str], list[tuple]]:
    """Run a user's SQL, read-only twice over: the parsed statement must be one SELECT (or EXPLAIN
    without ANALYZE), and it runs on a `sealed_connection`."""
    _check_read_only(sql)
    with sealed_connection(tables_root, tables) as con:
        return _fetched(con.execute(sql))


def format_table(columns: list[str], rows: list[tuple], float_digits: int = 4) -> str:
    """A plain-text table for the terminal."""

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.{float_digits}f}"
        return "" if value is None else str(value)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in body])
