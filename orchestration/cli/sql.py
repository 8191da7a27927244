"""`analogy sql "SELECT …"`: query the tables through the DuckDB views, read-only."""

from __future__ import annotations

import argparse
import csv
import json
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sql", help="run a read-only SQL query over the tables (DuckDB)",
                              description="Views: triplets, generations, metrics, leaderboard, generation_summary.")
    p.add_argument("query", help='e.g. "SELECT * FROM leaderboard"')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--home", help="ANALOGY_HOME (default: $ANALOGY_HOME or ./.analogy)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import duckdb

    from evaluation.views import build_database, format_table, query
    from orchestration.storage import Store

    store = Store(args.home)
    tables = store.tables_with_files()
    if not tables:
        print(f"analogy sql: no tables under {store.home}; run `analogy demo` first", file=sys.stderr)
        return 1
    if not store.duckdb_path.exists() or _missing_views(store.duckdb_path, tables):
        build_database(store.duckdb_path, store.home / "tables", tables)  # a table appeared since the last refresh
    try:
        columns, rows = query(store.duckdb_path, args.query)
    except duckdb.Error as exc:
        print(f"analogy sql: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    if args.format == "table":
        print(format_table(columns, rows))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    return 0


def _missing_views(db_path, tables: list[str]) -> bool:
    from evaluation.views import query

    _, rows = query(db_path, "SELECT view_name FROM duckdb_views() WHERE NOT internal")
    return bool(set(tables) - {r[0] for r in rows})
