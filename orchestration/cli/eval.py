"""`analogy eval reliability --n 32 --json`: Differential Diffusion's reliability score
(paper, Section 4.2.2: horizontal gradient change map, empty prompt).

Images: with `--images DIR` a folder of photos (the paper: ImageNet validation, resized to the
model's size); otherwise seeded toy renders, textured for the default profile `toy-textured`
(content in every column, as a photo has) and plain for `--profile toy`, whose one-colour
backgrounds cannot change part-way (docs/results.md#differential-diffusion)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluation protocols that run a method (reliability score)")
    sub = p.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")
    rel = sub.add_parser("reliability", help="Differential Diffusion's reliability score R (1 = perfect)")
    rel.add_argument("--n", type=int, default=32, help="number of images")
    rel.add_argument("--images", type=Path, help="a folder of photos (default: seeded toy renders)")
    rel.add_argument("--profile", default="toy-textured",
                     help="toy-textured (default: textured toy renders), toy (plain renders), or a real profile")
    rel.add_argument("--seed", type=int, default=0)
    rel.add_argument("--json", action="store_true", help="last line: one JSON object")
    rel.set_defaults(func=run_reliability)


def run_reliability(args: argparse.Namespace) -> int:
    from evaluation.scoring.reliability import folder_images, reliability_score, toy_images
    from models.loaders import load_pipeline
    from models.profiles import get_profile
    from ops.differential_diffusion import make_edit_fn

    start = time.perf_counter()
    profile, skipped = get_profile(args.profile), []
    # 1. the images, before any model is loaded (the profile's resolution is its pipeline's size)
    if args.images is None:
        images = toy_images(args.n, args.seed, textured=profile.textured)
    else:
        try:
            images, skipped = folder_images(args.images, args.n, profile.resolution, args.seed)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for row in skipped:
            print(f"skipped {row['file']}: {row['error']}", file=sys.stderr)
        if len(images) < 2:
            print(f"error: {args.images} has {len(images)} usable image(s); the score needs ≥ 2", file=sys.stderr)
            return 2
    # 2. the score
    result = reliability_score(make_edit_fn(load_pipeline(profile), prompt="", seed=args.seed), images)
    summary = {"reliability": result["reliability"], "proportional_ceiling": result["proportional_ceiling"],
               "n": result["n"], "images": str(args.images or f"toy {'textured ' * profile.textured}renders"),
               "skipped": len(skipped), "profile": args.profile, "seconds": round(time.perf_counter() - start, 1)}
    if not args.json:
        r, ceiling = (f"{v:.3f}" if v is not None else "undefined" for v in
                      (summary["reliability"], summary["proportional_ceiling"]))
        print(f"reliability R = {r} over {summary['n']} images (paper: 0.974; 1 = perfect); an editor changing "
              f"each column exactly m × the all-change edit would score {ceiling} on these images")
    print(json.dumps(summary))
    return 0
