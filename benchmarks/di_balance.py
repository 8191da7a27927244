"""How hard each term of Difference Inversion's loss pulls on D̃, on any profile whose models are here.

At the paper's weights (λtc = 0.01, λclip = 6) the toy's token-consistency gradient is about 1/400 of the
CLIP term's at the trained D̃ (benchmarks/DI_RESULTS.md §17), which is why token consistency, the negation
and the start of D̃ change nothing there. Whether Stable Diffusion has the same balance is this script's
question: per (A, A′) pair it trains D̃ through the method's own steps (captions, CLIP deltas, prompts,
DIFF training at the profile's DI defaults over `--settings`), then reads, at zero rows and at D̃,

    clip   ‖∇ λclip·(1 − cos(ET([SOT, X, EOT]), Dinter))‖
    tc     ‖∇ λtc·Ltc(X)‖, Ltc averaged over `--draws` fixed (t, noise) draws (the expected pull; one
           training step feels one draw)

and prints each pair's two norms and their ratio, then the medians.

    python benchmarks/di_balance.py --toy-seed 219544 --n 8                       # toy profile
    python benchmarks/di_balance.py --profile sd21-base --pairs a.png:a2.png b.png:b2.png   # a GPU, SD 2.1 cached
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from di_losses import term_pulls  # noqa: E402

from models.context import ModelContext  # noqa: E402
from models.toy.world import make_triplets  # noqa: E402
from ops import difference_inversion as di  # noqa: E402
from ops.cache import Cache  # noqa: E402
from ops.diff_tokens import training_prompts  # noqa: E402
from ops.registry import get_method  # noqa: E402
from ops.text import DiffusionText  # noqa: E402


def pulls(models, config, a: Image.Image, a_prime: Image.Image, rows: torch.Tensor, draws: int,
          cache: Cache) -> tuple[float, float]:
    """(‖∇ λclip·Lclip‖, ‖∇ λtc·Ltc‖) at `rows` for the pair (A, A′), from the method's own cached steps."""
    pipe, tsd = models.pipeline, DiffusionText(models.pipeline)
    target = di.deltas(models, a, a_prime, config, cache).pick(config.delta).to(tsd.device)
    ids = [p.token_ids for p in di.prompts(models, [a, a_prime], config, 0, cache)]
    ids_a, ids_a_prime = (torch.tensor(p) for p in training_prompts(*ids, config.changed_tokens))
    z_a, z_a_prime = di.pair_latents(pipe, a, a_prime, config)
    z = torch.cat([z_a[:1], z_a_prime[:1]])  # E(A), E(A′) (with augment='shift' the first view of each)
    return term_pulls(tsd, models.joint_clip, pipe.scheduler, config, z, ids_a, ids_a_prime, target, rows, draws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="toy", help="a model profile whose models are on this machine")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pairs", nargs="+", help="A.png:A2.png …: the (A, A′) pairs")
    where.add_argument("--toy-seed", type=int, help="toy benchmark seed: its first --n pairs")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--settings", default="{}", help="DI settings as JSON, over the profile's defaults")
    parser.add_argument("--draws", type=int, default=8, help="(t, noise) draws per Ltc reading")
    args = parser.parse_args()

    models, cache = ModelContext(args.profile), Cache()
    config = get_method("difference_inversion").config(json.loads(args.settings), models.profile)
    if args.pairs:
        pairs = []
        for spec in args.pairs:
            first, _, second = spec.partition(":")
            if not second:
                parser.error(f"--pairs takes A.png:A2.png, got {spec!r}")
            pairs.append((Image.open(first).convert("RGB"), Image.open(second).convert("RGB")))
    else:
        pairs = [(im["a"], im["a_prime"]) for im in (t.images() for t in make_triplets(args.toy_seed, args.n))]
    print(f"profile {args.profile}, λtc {config.lambda_tc}, λclip {config.lambda_clip}, {config.steps} DIFF steps, "
          f"{len(pairs)} pairs")
    trained = di.prepare_diff_tokens(models, pairs, config, seed=0, cache=cache, batch_size=8)
    print("| pair | clip at 0 | tc at 0 | clip at D̃ | tc at D̃ | clip / tc at D̃ |")
    print("| --- | --- | --- | --- | --- | --- |")
    ratios = []
    for i, ((a, a_prime), d) in enumerate(zip(pairs, trained)):
        if isinstance(d, Exception):
            print(f"| {i} | {type(d).__name__}: {d} | | | | |")
            continue
        zero = pulls(models, config, a, a_prime, torch.zeros_like(d.tokens), args.draws, cache)
        at_d = pulls(models, config, a, a_prime, d.tokens, args.draws, cache)
        ratios.append(at_d[0] / max(at_d[1], 1e-12))
        print(f"| {i} | {zero[0]:.3g} | {zero[1]:.3g} | {at_d[0]:.3g} | {at_d[1]:.3g} | {ratios[-1]:.3g} |", flush=True)
    if ratios:
        print(f"\nmedian clip / tc at D̃: {statistics.median(ratios):.3g} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
