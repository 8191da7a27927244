"""Difference Inversion on the toy benchmark: DI vs no-edit vs the paper's ablations,
and the `inversion_steps` sweep that settles which reading of "start step 45 out of 50" works.

    python -m benchmarks.di_toy --seed 0 --n 48 [--out results.md] [--rows rows.parquet]

Scores are read by the judge CLIP (joint = changed attribute right and every
other attribute of B kept). All rows run in one process and share one method
context, so the sweep reuses every D̃.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from models.toy.benchmark import write_benchmark
from orchestration.bench import run_bench, write_rows

MAIN = ["no_edit", "difference_inversion", "di_no_token_consistency", "di_image_delta", "di_random_init"]
SWEEP = [f"difference_inversion[inversion_steps={k}]" for k in (5, 10, 25, 40, 50)]  # 45 is the default row


def markdown(results: dict, title: str) -> str:
    attrs = sorted({a for r in results.values() for a in r["by_attribute"]})
    head = "| method | joint | target | keep | n | " + " | ".join(f"joint {a}" for a in attrs) + " | s/triplet |"
    lines = [f"### {title}", "", head, "|" + " --- |" * (6 + len(attrs))]
    for spec, r in results.items():
        per = " | ".join(f"{r['by_attribute'].get(a, {}).get('joint', float('nan')):.3f}" for a in attrs)
        lines.append(f"| `{spec}` | {r['joint']:.3f} | {r['target']:.3f} | {r['keep']:.3f} | {r['n']} | {per} | "
                     f"{r['seconds_per_triplet']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--methods", default=",".join(MAIN + SWEEP))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rows", type=Path, help="per-(method, triplet) judge rows as Parquet, for paired comparisons")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_benchmark(Path(tmp) / "bench.parquet", args.seed, args.n)
        start = time.perf_counter()
        specs = [s for s in args.methods.split(",") if s]
        rows = []
        results = run_bench(path, specs, rows_out=rows)
    if args.rows:
        write_rows(rows, args.rows)
    minutes = (time.perf_counter() - start) / 60
    text = markdown(results, f"toy benchmark seed {args.seed}, n = {args.n} ({minutes:.1f} min on this machine)")
    print(text)
    print(json.dumps(results))
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
