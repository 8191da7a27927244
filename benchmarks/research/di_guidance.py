"""Other ways to apply a learned D̃ to B, all through DI's generation path (B DDIM-inverted under its
prompt through `inversion_steps` of `num_steps`, then denoised), each a weighted sum of noise
predictions ε(·) under these conditionings:

    learned cfg g      ε(∅) + g·(ε([B, D̃]) − ε(∅))                 (the method; g = 7.5 its default)
    B-neg cfg g        ε([B]) + g·(ε([B, D̃]) − ε([B]))             (B's own prompt as the negative)
    delta_learned×s    ε(∅) + 7.5·(ε([B]) − ε(∅)) + s·(ε([A, D̃]) − ε([A]))
                       (D̃'s effect read in A's prompt, where A's other attributes cancel, added to B's)
    delta_caption×s    the same with A′'s caption in place of [A, D̃] (a text-only analogy, no D̃)
    learned+delta×s    the method's ε plus s·(ε([A, D̃]) − ε([A]))

D̃ is trained once per pair at the DI settings given (the toy profile's defaults over `--settings`);
every variant of a triplet is denoised in one batch and read by the judge CLIP.

    python -m benchmarks.research.di_guidance --seed 263991 --n 32 --variants cfg --scales 3,5,7.5,10,15
    python -m benchmarks.research.di_guidance --seed 234419 --n 16 --variants delta --scales 3,7.5 \
        --settings '{"changed_tokens": "keep"}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from evaluation.scoring.judge_scores import judge_triplet, summarise
from models.context import ModelContext
from models.loaders import load_judge
from models.toy.world import make_triplets
from ops import difference_inversion as di
from ops.cache import Cache
from ops.ddim import Schedule, ddim_invert, ddim_move, decode_latents, encode_images
from ops.diff_tokens import changed_tokens, generation_prompt, training_prompts, with_tokens
from ops.images import to_pil
from ops.registry import get_method
from ops.text import DiffusionText


@torch.no_grad()
def weighted_sample(unet, z_start, start_level: int, conds: torch.Tensor, weights: torch.Tensor, schedule):
    """DDIM (η = 0, ε-prediction) from `start_level` with ε = Σ_k w_k·ε(cond_k), one latent per row of
    `weights` (V, K); the K conditionings (K, L, D) are evaluated for every row in one UNet batch."""
    n_variants, k = weights.shape
    z = z_start.expand(n_variants, -1, -1, -1).clone()
    for level in range(start_level, len(schedule)):
        out = unet(z.repeat_interleave(k, 0), schedule.timesteps[level], conds.repeat(n_variants, 1, 1)).sample
        eps = (weights[:, :, None, None, None] * out.view(n_variants, k, *z.shape[1:])).sum(1)
        a = schedule.alpha[level]
        z = ddim_move((z - (1 - a).sqrt() * eps) / a.sqrt(), eps, schedule.alpha[level + 1])
    return z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True, help="toy benchmark seed (models.toy.world.make_triplets)")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--settings", default="{}", help="DI settings as JSON, over the toy profile's defaults")
    parser.add_argument("--variants", choices=("cfg", "delta"), default="delta")
    parser.add_argument("--scales", default="3,7.5", help="g (cfg) or s (delta), comma-separated")
    parser.add_argument("--rows", type=Path, help="write the per-(triplet, variant) rows here as JSON")
    args = parser.parse_args()

    models, cache, seed = ModelContext(), Cache(), 0
    pipe, judge = models.pipeline, load_judge(models.profile)
    config = get_method("difference_inversion").config(json.loads(args.settings), models.profile)
    if pipe.scheduler.config.prediction_type != "epsilon":
        parser.error("this script reads ε-predictions")
    text, scales, g0 = DiffusionText(pipe), [float(s) for s in args.scales.split(",")], config.guidance_scale
    start = time.perf_counter()
    triplets = make_triplets(args.seed, args.n)
    images = [t.images() for t in triplets]
    learned = di.prepare_diff_tokens(models, [(im["a"], im["a_prime"]) for im in images], config, seed=seed,
                                     cache=cache, batch_size=8)
    # the weights of ε over the conditionings [∅, B, [B, D̃], [A, D̃], A, A′]
    variants = {}
    for s in scales:
        if args.variants == "cfg":
            variants |= {f"learned cfg {s:g}": [1 - s, 0, s, 0, 0, 0], f"B-neg cfg {s:g}": [0, 1 - s, s, 0, 0, 0]}
        else:
            variants |= {f"delta_learned×{s:g}": [1 - g0, g0, 0, s, -s, 0],
                         f"delta_caption×{s:g}": [1 - g0, g0, 0, 0, -s, s],
                         f"learned+delta×{s:g}": [1 - g0, 0, g0, s, -s, 0]}
    weights = torch.tensor(list(variants.values()))
    schedule = Schedule(pipe.scheduler, config.num_steps)
    rows = []
    for t, im, d in zip(triplets, images, learned):
        p_a, p_ap, p_b = (di.prompt(models, im[k], config, seed, cache).token_ids for k in ("a", "a_prime", "b"))
        # the prompts beside D̃: A's as D̃ was trained beside it, B's as the method generates with it
        beside_a = torch.tensor(training_prompts(p_a, p_ap, config.changed_tokens)[0])
        beside_b = torch.tensor(generation_prompt(p_b, changed_tokens(p_a, p_ap)[0], config.changed_tokens))
        conds = torch.cat([text.unconditional(), text.encode([
            [torch.tensor(p_b)], with_tokens(beside_b, d.tokens), with_tokens(beside_a, d.tokens),
            [torch.tensor(p_a)], [torch.tensor(p_ap)]])])
        trajectory = ddim_invert(text.unet, encode_images(pipe, [im["b"]]), text.encode([[torch.tensor(p_b)]]),
                                 schedule, config.inversion_steps)
        z = weighted_sample(text.unet, trajectory[-1], config.num_steps - config.inversion_steps, conds, weights,
                            schedule)
        reads = judge.read(to_pil(decode_latents(pipe.vae, z)))
        for name, read in zip(variants, reads):
            score = judge_triplet(read, t.b.as_dict(), t.b_prime_gt.as_dict(), t.changed)
            rows.append({"triplet_id": t.triplet_id, "changed": t.changed, "variant": name, **score, "read": read})
        print(t.triplet_id, t.changed, {r["variant"]: int(r["joint"]) for r in rows[-len(variants):]}, flush=True)

    print(f"\n### toy seed {args.seed}, n = {args.n}, settings {args.settings} "
          f"({(time.perf_counter() - start) / 60:.1f} min)\n")
    attrs = ("background", "colour", "shape", "size")
    print("| variant | joint [95 % Wilson] | target | keep | " + " | ".join(attrs) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in attrs) + " |")
    for name in variants:
        s = summarise([r for r in rows if r["variant"] == name])
        low, high = s["ci95"]["joint"]
        print(f"| {name} | {s['joint']:.3f} [{low:.3f}, {high:.3f}] | {s['target']:.3f} | {s['keep']:.3f} | "
              + " | ".join(f"{s['by_attribute'].get(a, {}).get('joint', float('nan')):.2f}" for a in attrs) + " |")
    if args.rows:
        args.rows.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
