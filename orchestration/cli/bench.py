"""`analogy bench --benchmark FILE --methods m1,m2 [--json]`: judge methods on a toy benchmark file."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ops.cache import PREPARE_BATCH_SIZE


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="score methods on a toy benchmark file with the judge CLIP",
                              description="Methods are registered names (see README), optionally with settings: "
                                          "'difference_inversion[inversion_steps=5]'. Separate methods with commas.")
    p.add_argument("--benchmark", required=True, help="a file written by `analogy toy benchmark`")
    p.add_argument("--methods", default="difference_inversion,no_edit")
    p.add_argument("--profile", default="toy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="score only the first N triplets")
    p.add_argument("--batch-size", type=int, default=PREPARE_BATCH_SIZE,
                   help=f"(A, A′) pairs trained together: Difference Inversion's D̃, VISII's instructions "
                        f"(default {PREPARE_BATCH_SIZE}; "
                        "1 = one after another; the scores do not depend on it beyond float rounding)")
    p.add_argument("--json", action="store_true", help="print one JSON object {method: scores} instead of the table")
    p.add_argument("--rows", type=Path, help="also write one row per (method, triplet) to this Parquet file "
                                               "(method, triplet_id, changed, target, keep, joint, error)")
    p.add_argument("--against", metavar="METHOD",
                   help="one of --methods: compare every other method with it triplet by triplet on the joint "
                        "verdict (right only with it, only with the other, the exact sign test's p)")
    p.set_defaults(func=run)


def split_specs(text: str) -> list[str]:
    """Split on commas outside [...] settings."""
    specs, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            specs.append(current)
            current = ""
        else:
            current += ch
    return [s.strip() for s in specs + [current] if s.strip()]


def run(args: argparse.Namespace) -> int:
    from evaluation.scoring.stats import difference_text
    from models.profiles import get_profile
    from orchestration.bench import paired_against, run_bench, write_rows

    try:
        specs = split_specs(args.methods)
        rows = [] if args.rows or args.against else None
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be ≥ 1, got {args.batch_size}")
        if args.against is not None and args.against.strip() not in specs:
            raise ValueError(f"--against {args.against!r} is not one of --methods ({', '.join(specs)})")
        results = run_bench(args.benchmark, specs, args.profile, args.seed, args.limit, rows,
                            batch_size=args.batch_size)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"analogy bench: {exc}", file=sys.stderr)
        return 2
    if get_profile(args.profile).textured:
        print(f"analogy bench: profile {args.profile!r} renders the textured world, which the judge never saw: "
              "read PSNR to B′gt (gt_psnr), not joint / target / keep", file=sys.stderr)
    if args.rows:
        write_rows(rows, args.rows)
    if args.against:
        against = args.against.strip()  # a spec is its run's label (ops.registry.MethodRun)
        try:
            for spec, comparison in paired_against(rows, against).items():
                results[spec]["paired"] = {"against": against} | comparison
            if any(row.get("gt_psnr") is not None for row in rows):  # the file has B′gt
                for spec, comparison in paired_against(rows, against, "gt_psnr").items():
                    results[spec]["paired_gt_psnr"] = {"against": against} | comparison
        except ValueError as exc:  # every triplet of it failed: the scores still print, without pairs
            print(f"analogy bench: --against: {exc}", file=sys.stderr)
    if not args.json:
        print(f"{'method':48s} {'joint [95% CI]':>20s} {'target':>6s} {'keep':>6s} {'n':>4s} {'PSNR to B′gt':>12s}"
              "  s/triplet")
        for spec, r in results.items():
            low, high = r["ci95"].get("joint", [math.nan, math.nan])
            psnr = f"{r['gt_psnr']['mean']:9.2f} dB" if r.get("gt_psnr") else f"{'–':>12s}"
            print(f"{spec:48s} {r['joint']:6.3f} [{low:.3f}, {high:.3f}] {r['target']:6.3f} {r['keep']:6.3f} "
                  f"{r['n']:4d} {psnr}  "
                  f"{r['seconds_per_triplet']:.2f}" + (f"  ({len(r['errors'])} errors)" if r["errors"] else ""))
        for spec, r in results.items():
            if "paired" in r:
                c = r["paired"]
                print(f"paired, joint: {c['against']} only {c['first_only']}, {spec} only {c['second_only']} "
                      f"(sign test p = {c['p_value']:.3g}), both {c['both']}, neither {c['neither']}; "
                      f"joint difference {difference_text(c)}")
            if "paired_gt_psnr" in r:
                c = r["paired_gt_psnr"]
                print(f"paired, PSNR to B′gt: {c['against']} − {spec} {difference_text(c, 2)} dB over {c['n']} "
                      f"(Wilcoxon p = {c['p_value']:.3g})")
    else:
        print(json.dumps(results))
    return 0

