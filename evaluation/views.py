"""The DuckDB file of views over the Parquet tables, and the leaderboard.

Each table `t` becomes a view over `tables/t/*/*.parquet` (hive partitioning):
its `shard` column is the partition key (`toy`, `ip2p.003`) and `dataset` the
dataset's name (the key without its shard number). `leaderboard` is a table
computed from `metrics` whenever the views are built: mean and 95 % interval (evaluation.stats:
Wilson for 0/1 scores, Student's t otherwise) per dataset × method × config × metric.

Tables on an object store (`s3://…/tables`) are read through their fsspec filesystem,
registered with each DuckDB connection (no DuckDB extension is downloaded, and no credential
is written anywhere: the filesystem reads them from the environment). DuckDB opens database
files only on a local disk, so there the file is built or read in a temporary folder and
uploaded or downloaded whole.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from evaluation.files import Location, atomic_write, is_remote, location_text, remove_stale_temporaries
from evaluation.pairwise import WIN_RATE_COLUMNS, win_rates
from evaluation.stats import summarise
from evaluation.survey import RESULT_COLUMNS, survey_results

LEADERBOARD_COLUMNS = ("dataset", "method", "metric", "config_hash", "n", "mean", "ci95_low", "ci95_high",
                       "interval")


def leaderboard_rows(rows) -> list[dict]:
    """Mean and 95 % interval (evaluation.stats: Wilson for 0/1 scores, t otherwise) per dataset ×
    method × config × metric of `metrics` rows, best mean first within a metric."""
    out = summarise(rows, by=("dataset", "method", "metric", "config_hash"))
    return sorted(out, key=lambda r: (r["dataset"], r["metric"], -r["mean"], r["method"]))


S, INT, F = pa.string(), pa.int64(), pa.float64()
# Tables computed in Python from a view whenever the views are built (each from the table of the
# same key): the SQL that reads the view, the function of its rows, and the result's columns.
COMPUTED_TABLES = {
    "metrics": ("leaderboard", "SELECT dataset, method, metric, config_hash, value FROM metrics",
                leaderboard_rows, dict(zip(LEADERBOARD_COLUMNS, (S, S, S, S, INT, F, F, F, S)))),
    "judgements": ("win_rates", "SELECT dataset, judge_id, method, opponent, triplet_id, choice, consistent, error "
                   "FROM judgements", win_rates, dict(zip(WIN_RATE_COLUMNS, (S,) * 4 + (INT,) * 6 + (F,) * 4))),
    "survey_answers": ("survey_results", "SELECT dataset, survey_id, method, candidates FROM survey_answers",
                       survey_results, dict(zip(RESULT_COLUMNS, (S,) * 3 + (INT,) * 2 + (F,) * 3))),
}


def _computed_table(con, name: str, sql: str, compute, types: dict) -> None:
    """Table `name` on `con`: `compute` over the rows `sql` reads (as dicts), typed by `types`."""
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    rows = compute([dict(zip(names, r)) for r in cursor.fetchall()])
    con.register(f"{name}_rows", pa.table({c: pa.array([r[c] for r in rows], t) for c, t in types.items()}))
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_rows")
    con.unregister(f"{name}_rows")


GENERATION_ERRORS_SQL = """
CREATE OR REPLACE VIEW generation_summary AS
SELECT dataset, method, config_hash, count(*) AS generations,
       count(*) FILTER (WHERE error IS NOT NULL) AS errors, avg(seconds) AS mean_seconds
FROM generations GROUP BY ALL ORDER BY ALL
"""


def table_view_sql(table: str, tables_root: Location) -> str:
    pattern = f"{location_text(tables_root / table)}/*/*.parquet".replace("'", "''")
    return (
        f"CREATE OR REPLACE VIEW {table} AS "
        f"SELECT * EXCLUDE (dataset), split_part(dataset, '.', 1) AS dataset, dataset AS shard "
        f"FROM read_parquet('{pattern}', hive_partitioning = true, hive_types = {{'dataset': VARCHAR}})"
    )


def _reach(con, where: Location) -> None:
    """Let connection `con` read `where`'s object store through its fsspec filesystem."""
    if is_remote(where):
        con.register_filesystem(where.fs)


def _define_views(con, tables_root: Location, tables: list[str]) -> list[str]:
    """A view per table that has files, and the tables computed from them (COMPUTED_TABLES), on `con`."""
    _reach(con, tables_root)
    views = []
    for table in tables:
        con.execute(table_view_sql(table, tables_root))
        views.append(table)
    if "generations" in tables:
        con.execute(GENERATION_ERRORS_SQL)
        views.append("generation_summary")
    for source, (name, sql, compute, types) in COMPUTED_TABLES.items():  # leaderboard, win_rates, survey_results
        if source in tables:
            _computed_table(con, name, sql, compute, types)
            views.append(name)
    return views


def build_database(db_path: Location, tables_root: Location, tables: list[str]) -> list[str]:
    """(Re)write the DuckDB file with a view per table that has files, plus the
    leaderboard, for any DuckDB client. Built under a temporary name and renamed, so
    readers never see a half-built file (on an object store: built locally, one PUT).
    Returns the view names. The file records the tables folder its views read
    (`analogy_home`), so a moved or copied home can tell."""
    if is_remote(db_path):
        with tempfile.TemporaryDirectory(prefix="analogy-duckdb-") as folder:
            local = Path(folder) / db_path.name
            views = build_database(local, tables_root, tables)
            atomic_write(db_path, local.read_bytes())
        return views
    db_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(db_path.parent, db_path.name)
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        views = _define_views(con, tables_root, tables)
        con.execute("CREATE TABLE analogy_home AS SELECT ? AS tables_root", [_root_text(tables_root)])
        con.execute("CHECKPOINT")
    os.replace(tmp, db_path)
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
        cursor = con.execute(sql, params)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()


class QueryRefused(ValueError):
    """A user's SQL that is not one read-only statement."""


READ_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


def user_query(tables_root: Location, tables: list[str], sql: str) -> tuple[list[str], list[tuple]]:
    """Run a user's SQL, read-only for real: one SELECT (or EXPLAIN) statement, on an in-memory
    database whose views read `tables_root` (so a copied or moved home answers from its own
    tables), with file access limited to `tables_root` and the configuration locked (no COPY,
    EXPORT, ATTACH, INSTALL, SET, or reading files elsewhere)."""
    statements = duckdb.extract_statements(sql)  # a parse error is a duckdb.Error with DuckDB's message
    if len(statements) != 1:
        raise QueryRefused(f"one statement at a time, got {len(statements)}")
    kind = statements[0].type
    if kind not in READ_STATEMENTS:
        raise QueryRefused(f"only SELECT queries are allowed (read-only), got {kind.name}")
    with duckdb.connect(":memory:") as con:
        _define_views(con, tables_root, tables)
        root = _root_text(tables_root).replace("'", "''")
        con.execute(f"SET allowed_directories = ['{root}/']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()


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
