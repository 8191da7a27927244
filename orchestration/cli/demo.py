"""`analogy demo`: materialise the whole graph for one partition (default `toy`)
through Dagster, then print the leaderboard and where the report is.

Runs are recorded in `$DAGSTER_HOME` (default `$ANALOGY_HOME/dagster`), so
`dagster dev -w workspace.yaml` with the same DAGSTER_HOME shows them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# What the demo runs unless told otherwise: methods that fit its 5-minute budget on 2 CPU cores
# (DIA's L-BFGS noise estimation does not fit: add it with --methods …,dia).
DEMO_METHODS = ("no_edit", "difference_inversion", "sdedit", "differential_diffusion")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the pipeline on the toy partition and print the leaderboard")
    p.add_argument("--partition", default="toy", help="dataset partition (default: toy)")
    p.add_argument("--methods", default=",".join(DEMO_METHODS),
                   help=f"comma-separated registered methods (default: {','.join(DEMO_METHODS)}; 'default' = every "
                        "method registered with default=True, as a pipeline run from the UI uses)")
    p.add_argument("--profile", default="toy", help="model profile (default: toy)")
    p.add_argument("--home", help="ANALOGY_HOME (default: $ANALOGY_HOME or ./.analogy)")
    p.add_argument("--seed", type=int, default=0, help="the seed every method derives its seeds from (default: 0)")
    p.add_argument("--quiet", action="store_true", help="hide the per-triplet progress logs (warnings only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestration.runs import sigterm_as_interrupt

    with sigterm_as_interrupt():
        try:
            return _run(args)
        except Exception as exc:  # a full disk or a dead store, before, during or after the run: one line
            from orchestration.materialize import fault_advice, fault_in

            home = os.environ.get("ANALOGY_HOME") or args.home or "."
            places = [Path(p) for p in (home, os.environ.get("DAGSTER_HOME")) if p and "://" not in p]
            if (fault := fault_in(exc, places)) is None:
                raise
            print(f"analogy demo: {fault_advice(fault, home)}", file=sys.stderr)
            return 1


def _run(args: argparse.Namespace) -> int:
    from orchestration.executors import executor_name
    from orchestration.storage import analogy_home, dagster_home

    try:  # a wrong home or executor fails here, before any work
        home = analogy_home(args.home)
        executor = executor_name(default="in_process")
    except ValueError as exc:
        print(f"analogy demo: {exc}", file=sys.stderr)
        return 2
    os.environ["ANALOGY_HOME"] = str(home)
    own_instance = not os.environ.get("DAGSTER_HOME")  # unset or empty: the demo's own instance
    if own_instance:
        os.environ["DAGSTER_HOME"] = str(dagster_home(home))
    from orchestration.materialize import INSTANCE_CONFIG

    dagster_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    # the project's instance config, kept current in the demo's own instance (a user's own is left alone)
    if not dagster_yaml.exists() or (own_instance and dagster_yaml.read_text() != INSTANCE_CONFIG.read_text()):
        dagster_yaml.parent.mkdir(parents=True, exist_ok=True)
        dagster_yaml.write_text(INSTANCE_CONFIG.read_text())

    import dagster as dg

    from evaluation.presentation.views import format_table, query
    from models.profiles import get_profile
    from ops.registry import default_methods, resolve_specs
    from orchestration.cli.bench import split_specs
    from orchestration.materialize import materialize_partition, was_interrupted
    from orchestration.partitions import dataset_partitions
    from orchestration.runs import SlotWait, process_tags, release_dead_runs
    from orchestration.storage import Store

    if args.partition not in dataset_partitions.get_partition_keys():
        print(f"analogy demo: no partition {args.partition!r}; configured: "
              f"{', '.join(dataset_partitions.get_partition_keys())}", file=sys.stderr)
        return 2
    methods = default_methods() if args.methods == "default" else split_specs(args.methods)
    try:  # a wrong method, setting or profile fails here, before any work
        resolve_specs(methods, get_profile(args.profile))
    except (KeyError, ValueError, TypeError) as exc:
        print(f"analogy demo: {exc.args[0]}", file=sys.stderr)
        return 2
    print(f"Materialising triplets → generations → metrics → leaderboard, report for partition "
          f"{args.partition!r} (profile {args.profile}, methods {', '.join(methods)}) into {home}", flush=True)
    start = time.perf_counter()
    instance = dg.DagsterInstance.get()

    def say(line: str) -> None:
        print(f"analogy demo: {line}", flush=True)

    for line in release_dead_runs(instance):  # a dead run's pool slot would stall this run
        say(line)
    try:
        with SlotWait(instance, say):
            result = materialize_partition(args.partition, str(home), methods=methods, profile=args.profile,
                                           seed=args.seed, log_level="WARNING" if args.quiet else "INFO",
                                           instance=instance, tags={"launched_by": "analogy demo", **process_tags()},
                                           executor=executor)
    except KeyboardInterrupt:  # outside a step (loading, between steps): nothing half-written
        print("analogy demo: interrupted", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    if was_interrupted(result):
        instance.report_run_canceled(result.dagster_run, message="interrupted (Ctrl-C) in analogy demo")
        print(f"analogy demo: interrupted after {seconds:.0f} s; run {result.run_id} recorded as canceled "
              "(finished assets are kept: run the demo again to go on)", file=sys.stderr)
        return 130
    if not result.success:
        from orchestration.materialize import fault_advice, run_fault

        if fault := run_fault(result):  # the store or the disk, not the code: say which, and that a re-run resumes
            print(f"analogy demo: {fault_advice(fault, str(home))}", file=sys.stderr)
            return 1
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        print(f"analogy demo: the run failed at {', '.join(failed) or 'an unknown step'} "
              f"(see the log above, or open the run in the UI)", file=sys.stderr)
        return 1
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    store = Store(home)
    dataset = args.partition.split(".")[0]
    columns, rows = query(store.duckdb_path, "SELECT metric, method, privileged, n, mean, ci95_low, ci95_high "
                          "FROM leaderboard WHERE dataset = ? AND category = 'all' ORDER BY metric, privileged, "
                          "mean DESC", [dataset])
    print(f"\nLeaderboard ({dataset}: mean over triplets, 95% interval: Wilson for 0/1 judge scores, a bootstrap "
          "otherwise (none below n = 5); privileged = given the triplet's instruction):\n")
    print(format_table(columns, rows))
    columns, rows = query(store.duckdb_path, "SELECT judge, pool, rank, method, privileged, strength, ci_low, ci_high, "
                          "rank_low, rank_high, mean_win_rate FROM rankings WHERE dataset = ? AND category = 'all' "
                          "ORDER BY judge, pool DESC, rank, method", [dataset])
    if rows:
        print("\nRanking (pairwise judge, Bradley–Terry strength with 95% bootstrap interval and rank range; pool "
              "example_only = the methods that see only the example pair, all = every method):\n")
        print(format_table(columns, rows))
    print(f"\nReport:  {store.report_dir(args.partition) / 'index.html'}")
    print(f"Tables:  {home / 'tables'}   (query: analogy sql \"SELECT * FROM leaderboard\")")
    print(f"UI:      ANALOGY_HOME={home} DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev "
          "-w workspace.yaml")
    print(f"Done in {seconds:.0f} s.")
    for check in failed_checks:
        print(f"CHECK FAILED ({check.severity.value}): {check.asset_key.to_user_string()}.{check.check_name}: "
              f"{check.description}", file=sys.stderr)
    return 1 if any(c.severity == dg.AssetCheckSeverity.ERROR for c in failed_checks) else 0
