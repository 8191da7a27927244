"""The `analogy` command. Each sub-command lives in its own module with
`add_parser(subparsers)`, which sets `func(args) -> exit code`; add a module
name to COMMANDS to add a command. Heavy imports stay inside `func` so
`analogy --help` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["demo", "run", "sql", "bench", "toy", "eval", "survey"]


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching: `--method` is not silently taken for `--methods`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="analogy", description="Image analogies A : A′ :: B : B′, as a Dagster pipeline over "
                    "Parquet tables.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"orchestration.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("analogy: interrupted", file=sys.stderr)
        return 130


