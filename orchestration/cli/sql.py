"""`analogy sql "SELECT …"`: query the tables through the DuckDB views, read-only."""

from __future__ import annotations

import argparse
import csv
import json
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sql", help="run a read-only SQL query (one SELECT, or EXPLAIN "
                              "without ANALYZE) over the tables (DuckDB)",
                              description="Views: triplets, generations, metrics, judgements, survey_answers and "
                              "the DI tables; computed from them: leaderboard, win_rates, rankings, judge_quality, "
                              "judge_agreement, survey_results, generation_summary.")
    p.add_argument("query", help='e.g. "SELECT * FROM leaderboard"')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--home", help="ANALOGY_HOME (default: $ANALOGY_HOME or ./.analogy)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from evaluation.presentation.views import (
        QueryRefused,
        build_database,
        database_is_current,
        format_table,
        user_query,
    )
    from orchestration.storage import Store

    try:
        store = Store(args.home)
    except ValueError as exc:  # e.g. credentials written into an s3:// URL
        print(f"analogy sql: {exc}", file=sys.stderr)
        return 2
    tables = store.tables_with_files()
    if not tables:
        print(f"analogy sql: no tables under {store.home}; run `analogy demo` first", file=sys.stderr)
        return 1
    try:
        columns, rows = user_query(store.tables_root, tables, args.query)
    except QueryRefused as exc:
        print(f"analogy sql: refused: {exc}", file=sys.stderr)
        return 1
    except duckdb.PermissionException as exc:  # a file named in the query: the sealed connection reads none
        print(f"analogy sql: refused: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except duckdb.Error as exc:
        print(f"analogy sql: {str(exc).strip()}", file=sys.stderr)  # whole: DuckDB's hints come after the first line
        return 1
    if not store.remote and not database_is_current(store.duckdb_path, store.tables_root, tables):
        # for other DuckDB clients: a table appeared, or the home was copied or moved since the last refresh
        # (on an object store the leaderboard asset refreshes it: no download and upload per query)
        build_database(store.duckdb_path, store.tables_root, tables)
    if args.format == "table":
        print(format_table(columns, rows))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")  # Unix lines, as other tools expect
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    return 0
