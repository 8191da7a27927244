"""Paired comparisons from `analogy bench --rows` files: one method against every other, triplet by
triplet on the joint verdict (only one of the two right, both, neither, the exact two-sided sign test),
across files written by separate runs on the same benchmark; then, where the rows have it, on the PSNR
to B′gt (mean difference with its t interval, Wilcoxon signed-rank test).

    python -m benchmarks.paired main.parquet ablations.parquet --against difference_inversion
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq

from evaluation.scoring.stats import difference_text
from orchestration.bench import paired_against


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", type=Path, nargs="+", help="`analogy bench --rows` Parquet files")
    parser.add_argument("--against", required=True, help="the method every other one is compared with")
    args = parser.parse_args()
    rows = [row for path in args.rows for row in pq.read_table(path).to_pylist()]
    print(f"| method | {args.against} only | method only | both | neither | sign test p | joint difference [95 %] |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method, c in paired_against(rows, args.against).items():
        print(f"| `{method}` | {c['first_only']} | {c['second_only']} | {c['both']} | {c['neither']} "
              f"| {c['p_value']:.2g} | {difference_text(c)} |")
    if any(row.get("gt_psnr") is not None for row in rows):
        print(f"\n| method | n | PSNR to B′gt: {args.against} − method, dB [95 %] | Wilcoxon p |")
        print("| --- | --- | --- | --- |")
        for method, c in paired_against(rows, args.against, "gt_psnr").items():
            print(f"| `{method}` | {c['n']} | {difference_text(c, 2)} | {c['p_value']:.2g} |")


if __name__ == "__main__":
    main()
