"""What does each part of Difference Inversion's loss pin down? Per toy pair (A, A′), D̃ is trained at
the DI settings (the toy profile's defaults over `--settings`) and again without the CLIP loss, and
each loss term is read at several points of the space D̃ lives in:

    clip(X)   1 − cos(ET([SOT, X, EOT]), Dinter)       the CLIP term as training computes it
    tc(X)     λtc-free Ltc: MSE(before → A) + MSE(after → A′), averaged over `--draws` (t, noise)
    before    MSE(before → A) alone, with −X in `before` (negate), with X left out (remove) and,
              for D̃, with +D̃ in its place (does D̃ help A whatever its sign?)

for X = D̃ (defaults), D̃ trained without the CLIP loss, A′'s words ("large", "star", "black"),
the hand-written direction (those rows minus A's) and zero rows; plus the cosine between the two
D̃s and the norm of each weighted term's gradient at D̃; how far each ablation of `--compare` (trained at
its own preset over the same settings) and D̃ trained with another seed end from D̃ (cosine, and distance
over D̃'s norm), so an ablation's move can be read against a new seed's. And, as an exact search where training's is
local: every attribute word of the toy vocabulary (each value's word: "small", "red", "star",
"white", …) as a one-row D̃, ranked by Ltc (the same draws for all) and by the CLIP term: is A′'s
new word the one the objective prefers? If the CLIP term reaches its minimum at no
cost in Ltc, and D̃s far apart fit A′ equally well, one (A, A′) pair leaves D̃ undetermined along
directions that decide whether the change transfers to B.

    python -m benchmarks.research.di_losses --seed 263991 --n 8 [--settings '{"steps": 1000}']
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import torch
import torch.nn.functional as F

from benchmarks.common import token_ids
from models.context import ModelContext
from models.toy.world import ATTRIBUTES, make_triplets, phrase
from ops import difference_inversion as di
from ops.cache import Cache
from ops.ddim import encode_images
from ops.diff_tokens import denoising_mse, pair_parts, training_prompts
from ops.registry import get_method
from ops.text import DiffusionText, clip_specials, token_sequence


def clip_term(clip, rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − cos(ET([SOT, rows, EOT]), target), as DIFF training computes it."""
    embeds, ids = token_sequence(clip.token_table, [rows], clip_specials(clip))
    text = clip.encode_token_embeddings(embeds[None], ids[None]).float()[0]
    return 1 - F.cosine_similarity(text, F.normalize(target.float(), dim=-1), dim=0)


def tc_terms(tsd, scheduler, z: torch.Tensor, ids_a, ids_a_prime, rows: torch.Tensor, negation: str,
             draws: int) -> torch.Tensor:
    """(MSE(before → A), MSE(after → A′)) at `rows`, each averaged over `draws` fixed (t, noise);
    z = E(A), E(A′) stacked, (2, C, h, w), on the models' device."""
    generator, out = torch.Generator().manual_seed(1), []
    for _ in range(draws):
        cond = tsd.encode(list(pair_parts(ids_a, ids_a_prime, rows, negation)))
        t = torch.randint(0, scheduler.config.num_train_timesteps, (2,), generator=generator).to(z.device)
        noise = torch.randn(z.shape, generator=generator).to(z.device, z.dtype)
        out.append(denoising_mse(tsd.unet, scheduler, z, noise, t, cond))
    return torch.stack(out).mean(0)


def term_pulls(tsd, clip, scheduler, config, z: torch.Tensor, ids_a, ids_a_prime, target: torch.Tensor,
               rows: torch.Tensor, draws: int) -> tuple[float, float]:
    """(‖∇ λclip·Lclip‖, ‖∇ λtc·Ltc‖) at `rows`, Ltc over `draws` fixed (t, noise) draws: how hard each
    weighted term pulls on D̃ there."""
    x = rows.detach().clone().to(tsd.device).requires_grad_(True)
    pull_clip = torch.autograd.grad(config.lambda_clip * clip_term(clip, x[:, tsd.clip_columns], target), x)[0]
    x = rows.detach().clone().to(tsd.device).requires_grad_(True)
    tc = config.lambda_tc * tc_terms(tsd, scheduler, z, ids_a, ids_a_prime, x, config.negation, draws).sum()
    return pull_clip.norm().item(), torch.autograd.grad(tc, x)[0].norm().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True, help="toy benchmark seed (models.toy.world.make_triplets)")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--settings", default="{}", help="DI settings as JSON, over the toy profile's defaults")
    parser.add_argument("--draws", type=int, default=16, help="(t, noise) draws per Ltc reading")
    parser.add_argument("--compare", default="di_no_token_consistency,di_remove_negation,di_random_init,di_text_delta",
                        help="DI ablations whose D̃ is compared with D̃ (comma-separated; '' for none)")
    args = parser.parse_args()

    models, cache = ModelContext(), Cache()
    config = get_method("difference_inversion").config(json.loads(args.settings), models.profile)
    compared = {name: get_method(name).config(json.loads(args.settings), models.profile)  # a wrong name fails here,
                for name in filter(None, args.compare.split(","))}                      # before any model loads
    pipe, clip = models.pipeline, models.joint_clip
    tsd = DiffusionText(pipe)
    table = tsd.tables[-1]
    triplets = make_triplets(args.seed, args.n)
    images = [t.images() for t in triplets]
    pairs = [(im["a"], im["a_prime"]) for im in images]
    trained = di.prepare_diff_tokens(models, pairs, config, seed=0, cache=cache, batch_size=8)
    no_clip = di.prepare_diff_tokens(models, pairs, replace(config, clip_loss=False), seed=0, cache=cache,
                                     batch_size=8)
    others = {"seed 1": di.prepare_diff_tokens(models, pairs, config, seed=1, cache=cache, batch_size=8)}
    for name, other_config in compared.items():
        others[name] = di.prepare_diff_tokens(models, pairs, other_config, seed=0, cache=cache, batch_size=8)

    def ids(text: str) -> torch.Tensor:
        return token_ids(pipe, text)

    words = sorted({value for values in ATTRIBUTES.values() for value in values})
    word_ids = torch.stack([ids(w)[0] for w in words])  # each value is one token of the toy vocabulary
    rows = []
    for i, (t, im, d, d_free) in enumerate(zip(triplets, images, trained, no_clip)):
        target = di.deltas(models, im["a"], im["a_prime"], config, cache).pick(config.delta)
        new, old = ids(phrase(t.a_prime, t.changed)), ids(phrase(t.a, t.changed))
        hand = table[new] - table[old]
        points = {"D": d.tokens, "D_no_clip": d_free.tokens, "words": table[new], "hand": hand[hand.norm(dim=-1) > 0],
                  "zero": torch.zeros_like(d.tokens)}
        prompt_ids = [di.prompt(models, im[k], config, 0, cache).token_ids for k in ("a", "a_prime")]
        ids_a, ids_a_prime = (torch.tensor(p) for p in training_prompts(*prompt_ids, config.changed_tokens))
        z = encode_images(pipe, [im["a"], im["a_prime"]])
        row = {"triplet_id": t.triplet_id, "changed": t.changed,
               "cos_D_D_no_clip": F.cosine_similarity(d.tokens.flatten(), d_free.tokens.flatten(), dim=0).item()}
        for name, found in others.items():
            other = found[i].tokens
            row[f"cos_D[{name}]"] = F.cosine_similarity(d.tokens.flatten(), other.flatten(), dim=0).item()
            row[f"dist_D[{name}]"] = ((d.tokens - other).norm() / d.tokens.norm()).item()
        with torch.no_grad():
            for name, x in points.items():
                row[f"clip[{name}]"] = clip_term(clip, x, target).item()
                if name in ("D", "D_no_clip", "words", "zero"):
                    before, after = tc_terms(tsd, pipe.scheduler, z, ids_a, ids_a_prime, x, config.negation,
                                             args.draws).tolist()
                    row[f"tc[{name}]"] = before + after
                    row[f"before[{name}]"] = before
            row["before[D, removed]"] = tc_terms(tsd, pipe.scheduler, z, ids_a, ids_a_prime, d.tokens, "remove",
                                                 args.draws)[0].item()
            # +D̃ where training puts −D̃: if it helps A as much, D̃ holds what A and A′ share, not the change
            row["before[+D]"] = tc_terms(tsd, pipe.scheduler, z, ids_a, ids_a_prime, -d.tokens, config.negation,
                                         args.draws)[0].item()
            new_word = words.index(getattr(t.a_prime, t.changed))
            by_tc = torch.stack([tc_terms(tsd, pipe.scheduler, z, ids_a, ids_a_prime, table[w][None], config.negation,
                                          args.draws).sum() for w in word_ids])
            by_clip = torch.stack([clip_term(clip, table[w][None], target) for w in word_ids])
            row["rank_tc[new word]"] = 1 + int((by_tc < by_tc[new_word]).sum())
            row["rank_clip[new word]"] = 1 + int((by_clip < by_clip[new_word]).sum())
        row["grad_clip"], row["grad_tc_one_draw"] = term_pulls(tsd, clip, pipe.scheduler, config, z, ids_a,
                                                               ids_a_prime, target, d.tokens, 1)
        rows.append(row)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    keys = [k for k in rows[0] if k not in ("triplet_id", "changed")]
    for key in ("rank_tc[new word]", "rank_clip[new word]"):
        ranks = [r[key] for r in rows]
        print(f"{key}: first in {sum(r == 1 for r in ranks)} of {len(ranks)} pairs, by attribute "
              + ", ".join(f"{a} {[r[key] for r in rows if r['changed'] == a]}" for a in ATTRIBUTES)
              + f" (of {len(words)} words)")
    print(f"\n### toy seed {args.seed}, n = {args.n}, settings {args.settings}: means over pairs\n")
    print("| quantity | mean | min | max |\n| --- | --- | --- | --- |")
    for k in keys:
        values = [r[k] for r in rows]
        print(f"| {k} | {statistics.fmean(values):.3f} | {min(values):.3f} | {max(values):.3f} |")


if __name__ == "__main__":
    main()
