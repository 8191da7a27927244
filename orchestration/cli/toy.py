"""`analogy toy check|benchmark|triplet`: the toy world's models, benchmark files and example images."""

from __future__ import annotations

import argparse
import json
import sys
import time


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("toy", help="the toy world: check its models, write benchmark files")
    sub = p.add_subparsers(dest="toy_command", required=True, metavar="TOY_COMMAND")
    check = sub.add_parser("check", help="judge the committed toy models (t2i, DDIM reconstruction, VAE, "
                                                 "composition, the instruction editor, the inpainter)")
    check.add_argument("--json", action="store_true", help="last line: one JSON object")
    check.set_defaults(func=run_check)
    bench = sub.add_parser("benchmark", help="write a seeded toy benchmark file (Parquet)")
    bench.add_argument("--seed", type=int, required=True)
    bench.add_argument("--n", type=int, required=True, help="number of triplets")
    bench.add_argument("--out", required=True, help="FILE.parquet")
    bench.add_argument("--textured", action="store_true", help="render the textured world (blobs on the "
                       "background, B′gt with B's): score with `analogy bench --profile toy-textured`; its judge "
                       "never saw textures, so read `gt_psnr` there, not the verdicts")
    bench.set_defaults(func=run_benchmark)
    triplet = sub.add_parser("triplet", help="write one toy triplet as PNGs (A.png, A2.png, B.png, B_gt.png), "
                                             "the inputs `analogy run` takes")
    triplet.add_argument("--seed", type=int, default=0, help="benchmark seed (default: 0)")
    triplet.add_argument("--index", type=int, default=1, help="which triplet of that seed (default: 1)")
    triplet.add_argument("--out", required=True, help="folder to write into (created)")
    triplet.set_defaults(func=run_triplet)


def run_check(args: argparse.Namespace) -> int:
    from evaluation.scoring.toy_check import toy_check
    from models.toy.world import IMAGE_SIZE
    from ops import analogist
    from ops.ddim import ddim_reconstruct, vae_round_trip

    start = time.perf_counter()
    cell, padding = IMAGE_SIZE, analogist.AnalogistConfig().padding  # the toy grid: 2×2 cells of the world
    inpaint_grid = (lambda a, a_prime, b: analogist.make_grid(a, a_prime, b, cell, padding),
                    analogist.b_prime_box(2 * cell, padding, "inner"), analogist.b_prime_mask(2 * cell))
    result = (toy_check(ddim_reconstruct, vae_round_trip, inpaint_grid=inpaint_grid)
              | {"seconds": round(time.perf_counter() - start, 1)})
    if not args.json:
        for section in ("t2i", "reconstruction", "vae", "composition", "editor", "inpainter"):
            print(f"{section}: {json.dumps(result[section])}")
    print(json.dumps(result))
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    from models.toy.benchmark import write_benchmark

    try:
        path = write_benchmark(args.out, args.seed, args.n, args.textured)
    except (ValueError, OSError) as exc:
        print(f"analogy toy benchmark: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} {'textured ' if args.textured else ''}triplets (seed {args.seed}) to {path}")
    return 0


def run_triplet(args: argparse.Namespace) -> int:
    from pathlib import Path

    from models.toy.world import make_triplets

    if args.index < 0:
        print("analogy toy triplet: --index must be ≥ 0", file=sys.stderr)
        return 2
    t = make_triplets(args.seed, args.index + 1)[args.index]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = {"a": "A.png", "a_prime": "A2.png", "b": "B.png", "b_prime_gt": "B_gt.png"}
    for role, image in t.images().items():
        image.save(out / names[role])
    (out / "instruction.txt").write_text(t.instruction + "\n")
    print(f"wrote {t.triplet_id} ({t.changed}: {t.instruction!r}) to {out}: {', '.join(names.values())}")
    return 0
