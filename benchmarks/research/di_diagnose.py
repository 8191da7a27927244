"""What do the DIFF tokens learn? For each toy triplet, train D̃ and sample text-to-image
(25 DDIM steps, CFG 7.5, 4 seeds) from the training sequences and from B's:

    after  = [SOT, prompt(A),  +D̃, EOT]  → does the judge read A′'s value?
    before = [SOT, prompt(A′), −D̃, EOT]  → does the judge read A's value?
    [SOT, prompt(B), +D̃, EOT]            → joint score against B′gt (no inversion)

    python -m benchmarks.research.di_diagnose '{"lambda_tc": 100}' --seed 100 --n 12
"""

import argparse
import json
import time

import torch

from evaluation.scoring.judge_scores import judge_triplet
from models.context import ModelContext
from models.loaders import load_judge
from models.toy.world import make_triplets
from ops import difference_inversion as di
from ops.cache import Cache
from ops.ddim import Schedule, ddim_sample, decode_latents
from ops.images import to_pil
from ops.registry import get_method
from ops.text import encode_diffusion_text, encode_prompt, pipeline_specials, token_sequence


def sample(pipe, parts, n=4, steps=25, seed=0):
    table = pipe.text_encoder.get_input_embeddings().weight
    cond = encode_diffusion_text(pipe.text_encoder, *token_sequence(table, parts, pipeline_specials(pipe)))
    uncond = encode_prompt(pipe, "")
    z = torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    schedule = Schedule(pipe.scheduler, steps)
    z = ddim_sample(pipe.unet, z, 0, cond.repeat(n, 1, 1), schedule, uncond.repeat(n, 1, 1), 7.5)
    return to_pil(decode_latents(pipe.vae, z))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="?", default="{}", help="DI settings as JSON (over the toy profile's)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--n", type=int, default=12)
    args = parser.parse_args()
    models, cache, seed = ModelContext(), Cache(), 0
    pipe, judge = models.pipeline, load_judge(models.profile)
    config = get_method("difference_inversion").config(json.loads(args.settings), models.profile)
    totals = {"after_gives_a_prime": 0.0, "before_gives_a": 0.0, "b_prompt_plus_d_joint": 0.0}
    start = time.perf_counter()
    triplets = make_triplets(args.seed, args.n)
    for t in triplets:
        im = t.images()
        p_a, p_ap, p_b = (torch.tensor(di.prompt(models, im[k], config, seed, cache).token_ids)
                          for k in ("a", "a_prime", "b"))
        target = di.deltas(models, im["a"], im["a_prime"], config, cache).pick(config.delta)
        d = di.diff_tokens(models, im["a"], im["a_prime"], p_a.tolist(), p_ap.tolist(), target, config, seed, cache)
        ch = t.changed
        after, before = judge.read(sample(pipe, [p_a, d.tokens])), judge.read(sample(pipe, [p_ap, -d.tokens]))
        totals["after_gives_a_prime"] += sum(r[ch] == getattr(t.a_prime, ch) for r in after) / 4
        totals["before_gives_a"] += sum(r[ch] == getattr(t.a, ch) for r in before) / 4
        totals["b_prompt_plus_d_joint"] += sum(judge_triplet(r, t.b.as_dict(), t.b_prime_gt.as_dict(), ch)["joint"]
                                               for r in judge.read(sample(pipe, [p_b, d.tokens]))) / 4
        tc = d.curve["tc"]
        clip = d.curve["clip"][-1] if d.curve["clip"] else float("nan")
        print(f"{t.triplet_id} {ch:10s} Ltc first {tc[0] if tc else float('nan'):.3f} last-30 mean "
              f"{sum(tc[-30:]) / max(1, len(tc[-30:])):.3f}  Lclip last {clip:.4f}"
              f"  |D̃| {d.tokens.norm(dim=-1).mean():.2f}", flush=True)
    print(json.dumps({"settings": json.loads(args.settings), "n": args.n, "seed": args.seed,
                      **{k: round(v / args.n, 3) for k, v in totals.items()},
                      "seconds": round(time.perf_counter() - start)}))


if __name__ == "__main__":
    main()
