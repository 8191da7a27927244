"""`analogy eval reliability --n 32 --json`: Differential Diffusion's reliability score
(paper §4.2.2: horizontal gradient change map, empty prompt) on toy images."""

from __future__ import annotations

import argparse
import json
import time


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluation protocols that run a method (reliability score)")
    sub = p.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")
    rel = sub.add_parser("reliability", help="Differential Diffusion's reliability score R (limit 1)")
    rel.add_argument("--n", type=int, default=32, help="number of toy images")
    rel.add_argument("--profile", default="toy")
    rel.add_argument("--seed", type=int, default=0)
    rel.add_argument("--json", action="store_true", help="last line: one JSON object")
    rel.set_defaults(func=run_reliability)


def run_reliability(args: argparse.Namespace) -> int:
    from evaluation.reliability import reliability_score, toy_images
    from models.loaders import load_pipeline
    from models.profiles import get_profile
    from ops.differential_diffusion import make_edit_fn

    start = time.perf_counter()
    edit = make_edit_fn(load_pipeline(get_profile(args.profile)), prompt="", seed=args.seed)
    result = reliability_score(edit, toy_images(args.n, args.seed))
    summary = {"reliability": result["reliability"], "proportional_ceiling": result["proportional_ceiling"],
               "n": result["n"], "profile": args.profile,
               "seconds": round(time.perf_counter() - start, 1)}
    if not args.json:
        r, ceiling = (f"{v:.3f}" if v is not None else "undefined" for v in
                      (summary["reliability"], summary["proportional_ceiling"]))
        print(f"reliability R = {r} over {summary['n']} images (paper: 0.974; limit 1); an editor changing "
              f"each column exactly m × the all-change edit would score {ceiling} on these images")
    print(json.dumps(summary))
    return 0
