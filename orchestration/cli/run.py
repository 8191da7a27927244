"""`analogy run --a A.png --a-prime A2.png --b B.png --out DIR`: one triplet, no Dagster.

Inputs that can be repaired are converted and each conversion is logged; an
unusable input exits with status 2 and one line naming the file and the reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("analogy.run")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="generate B′ for one triplet A : A′ :: B : ?")
    p.add_argument("--a", required=True, type=Path, help="A, the example's before image")
    p.add_argument("--a-prime", required=True, type=Path, help="A′, the example's after image")
    p.add_argument("--b", required=True, type=Path, help="B, the image to edit")
    p.add_argument("--method", default="no_edit", help="a registered method (default: no_edit)")
    p.add_argument("--profile", default="toy", help="model profile: toy, sd21-base, sd21, sd15, sdxl")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a method option (JSON value), repeatable")
    p.add_argument("--change-map", type=Path, default=None, metavar="MAP.png",
                   help="greyscale image of B's aspect: white = change fully, black = keep B "
                        "(apply the difference only here, this much)")
    p.add_argument("--instruction", default=None, help="the edit in words, for the text-guided baselines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="folder for b_prime.png and run.json")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)


def parse_settings(items: list[str]) -> dict:
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    return settings


def run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)  # the current stderr, also when called in-process
    handler.setFormatter(logging.Formatter("analogy run: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        return _run(args)
    finally:
        log.removeHandler(handler)


def _run(args: argparse.Namespace) -> int:
    from evaluation.ingestion.files import StoreFault, atomic_write
    from evaluation.ingestion.images import ImageError, load_image, png_bytes
    from models.context import ModelContext
    from ops.cache import image_hash
    from ops.registry import MethodRun, check_change_map, config_json, get_method, run_method

    images = {}
    for role, path in (("a", args.a), ("a_prime", args.a_prime), ("b", args.b)):
        try:
            loaded = load_image(path)
        except ImageError as exc:
            print(f"analogy run: error: {path}: {exc}", file=sys.stderr)
            return 2
        for note in loaded.notes:
            log.info(f"{path}: {note}")
        images[role] = loaded
    models = ModelContext(args.profile)
    try:
        method = get_method(args.method)
        run_spec = MethodRun(args.method, method, method.config(parse_settings(args.set), models.profile))
    except (KeyError, ValueError, TypeError) as exc:
        print(f"analogy run: error: {exc.args[0]}", file=sys.stderr)
        return 2
    change_map = map_record = None
    if args.change_map is not None:
        try:
            loaded_map = load_image(args.change_map, allow_blank=True)
            change_map = check_change_map(loaded_map.image, images["b"].image)  # greyscale: white = change
            map_record = {"path": str(args.change_map), "image_hash": image_hash(loaded_map.image)}
        except (ImageError, ValueError) as exc:
            print(f"analogy run: error: {args.change_map}: {exc}", file=sys.stderr)
            return 2
    if args.method != "no_edit":
        log.info(f"loading the {args.profile} models and running {args.method} (config {run_spec.config_hash})")
    try:
        b_prime = run_method(run_spec, models, images["a"].image, images["a_prime"].image, images["b"].image,
                             seed=args.seed, change_map=change_map, instruction=args.instruction)
    except Exception as exc:
        if args.debug:
            raise
        print(f"analogy run: error: method {args.method!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out = args.out / "b_prime.png"
    b_prime = b_prime.convert("RGB")
    record = {"method": args.method, "config": json.loads(config_json(run_spec.config)),
              "config_hash": run_spec.config_hash,
              "profile": args.profile, "seed": args.seed, "instruction": args.instruction,
              "change_map": map_record,
              "inputs": {role: {"path": str(getattr(args, role)), "image_hash": image_hash(im.image),
                               "notes": im.notes}
                         for role, im in images.items()},
              "b_prime": {"path": str(out), "image_hash": image_hash(b_prime)}}
    try:
        atomic_write(out, png_bytes(b_prime))
        atomic_write(args.out / "run.json", (json.dumps(record, indent=2, default=str) + "\n").encode())
    except StoreFault as exc:  # a full disk: one line that says how much space it needs, not a traceback
        print(f"analogy run: error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
