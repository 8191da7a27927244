"""How much of the analogy can the text side carry at all? Each toy triplet's B′ is generated the
way Difference Inversion generates it (DDIM-invert B with B's prompt through `inversion_steps`
of `num_steps`, denoise with CFG) from different conditionings, and the judge CLIP scores each:

    nothing      [SOT, prompt(B), EOT]                         (inversion and back: keeps B)
    learned      [SOT, prompt(B), D̃, EOT]                      (D̃ of (A, A′) at the DI config: the method itself)
    hand_diff    [SOT, prompt(B), e(A′ phrase) − e(A phrase), EOT]   (the hand-written direction)
    hand_diff×s  the same direction times s (`--hand-scales`: D̃'s rows are several times longer)
    word         [SOT, prompt(B), e(A′ phrase), EOT]            (A′'s words appended)
    *_first      the same with the rows before B's prompt (DI's former `placement=prepend`, since removed:
                 docs/results.md#di-switches)
    oracle       [SOT, caption(B′gt), EOT]                      (the right prompt in place of B's)
    *_drop       `nothing`, `word`: B's prompt without the tokens of A's prompt that A′'s lacks (the words
                 the change replaces; DI's `changed_tokens=drop` leaves them out beside D̃)
    ltc_word_drop  (only by `--conditions`) `nothing_drop` plus the one vocabulary token whose row,
                 appended to A's shortened prompt, best denoises A′ (the `after` half of Ltc, the same
                 `--ltc-draws` (t, noise) draws for every token): an exhaustive search where DIFF
                 training's is local, on one pair
    learned_word_clip  (only by `--conditions`) D̃ trained as `learned`, but the CLIP term's target is the joint
                 CLIP's encoding of A′'s new words alone, n(ET([SOT, "large", EOT])), in place of Dinter: a
                 CLIP term that A′'s words meet exactly. Does a CLIP loss that points at the words move D̃
                 toward what transfers (then a toy CLIP that aligns words with image deltas is the fix), or
                 does one pair leave D̃ free enough to meet it elsewhere?
    learned_k    (`--extra-pairs K`) one D̃ trained on (A, A′) and K more pairs of the same change
                 (A's changed value → A′'s, every other attribute and the render drawn at random):
                 does a D̃ that must serve several contexts transfer better?

`e(·)` is the diffusion text encoder's token table; a phrase is the attribute's words in the
canonical caption ("red", "star", "large", "on a black background"), so the hand-written
direction is one non-zero row. `hand_diff` and `word` bound what any learned D̃ appended to B's
prompt can do; `oracle` bounds what any prompt can do through this generation path. Per triplet
it also records how D̃ relates to the hand-written direction (cosine of D̃'s row sum with it, and
each D̃ row's nearest vocabulary token).

    python -m benchmarks.research.di_upper_bound --seed 12345 --n 48 [--settings '{"steps": 1000}'] \
        [--rows rows.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import token_ids
from evaluation.scoring.judge_scores import judge_triplet, summarise
from models.context import ModelContext
from models.loaders import load_judge
from models.toy.world import ATTRIBUTE_NAMES, ATTRIBUTES, Scene, caption, make_triplets, phrase, render
from ops import difference_inversion as di
from ops.cache import Cache, content_seed
from ops.ddim import Schedule, ddim_invert, ddim_sample, decode_latents, encode_images
from ops.diff_tokens import (
    PairInputs,
    changed_tokens,
    denoising_mse,
    train_diff_tokens_batch,
    training_prompts,
    with_tokens,
    without,
)
from ops.images import to_pil
from ops.registry import get_method
from ops.text import DiffusionText

BASE_CONDITIONS = ("nothing", "learned", "hand_diff", "word", "hand_diff_first", "word_first", "oracle",
                   "nothing_drop", "word_drop")
OPT_IN = ("ltc_word_drop", "learned_word_clip")  # only when --conditions names them (ltc_word_drop: a
# vocabulary-wide search, ~20 s per toy triplet; learned_word_clip: a second D̃ per triplet)


@torch.no_grad()
def regenerate(pipe, b, prompt_b: list[int], conditionings: list[list[torch.Tensor]], config) -> list:
    """B′ through DI's generation path (ops.difference_inversion.apply_difference) with each
    denoising conditioning [SOT, *parts, EOT] in place of [SOT, prompt(B), D̃, EOT]: B inverted once
    under its prompt, the conditionings denoised as one batch."""
    text = DiffusionText(pipe)
    z0 = encode_images(pipe, [b])
    schedule = Schedule(pipe.scheduler, config.num_steps)
    trajectory = ddim_invert(text.unet, z0, text.encode([[torch.tensor(prompt_b)]]), schedule, config.inversion_steps)
    n = len(conditionings)
    z = ddim_sample(text.unet, trajectory[-1].expand(n, -1, -1, -1), config.num_steps - config.inversion_steps,
                    text.encode(conditionings), schedule, text.unconditional().expand(n, -1, -1),
                    config.guidance_scale)
    return to_pil(decode_latents(pipe.vae, z))


@torch.no_grad()
def ltc_best_token(pipe, z_a_prime: torch.Tensor, prompt: list[int], draws: int, seed: int) -> int:
    """The vocabulary token whose row appended to `prompt` gives the lowest MSE(→ A′) over `draws`
    (t, noise) draws shared by every token (never SOT, EOT or padding)."""
    text = DiffusionText(pipe)
    table, specials = text.tables[0], text.specials[0]
    candidates = [i for i in range(text.vocab_size) if i not in (specials.sot, specials.eot, specials.pad)]
    cond = text.encode([[torch.tensor(prompt), table[i][None]] for i in candidates])
    generator, total = torch.Generator().manual_seed(seed), torch.zeros(len(candidates))
    for _ in range(draws):
        t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (1,), generator=generator)
        noise = torch.randn(z_a_prime.shape, generator=generator)
        n = len(candidates)
        total += denoising_mse(text.unet, pipe.scheduler, z_a_prime.expand(n, -1, -1, -1),
                               noise.expand(n, -1, -1, -1), t.expand(n), cond)
    return candidates[int(total.argmin())]


def dtilde_stats(d, hand: torch.Tensor, table: torch.Tensor, vocab: list[str]) -> dict:
    """How a trained D̃ relates to the hand-written direction, and where its training losses ended."""
    if d is None:
        return {}
    if isinstance(d, Exception):
        return {"learned_error": repr(d)}
    tokens = d.tokens
    nearest = F.normalize(tokens, dim=-1) @ F.normalize(table, dim=-1).T
    last = {k: sum(v[-30:]) / len(v[-30:]) for k, v in d.curve.items() if v}
    return {"cos_sum_hand": F.cosine_similarity(tokens.sum(0), hand.sum(0), dim=0).item(),
            "max_row_cos_hand": (F.normalize(tokens, dim=-1) @ F.normalize(hand.sum(0), dim=0)).max().item(),
            "norm": tokens.norm(dim=-1).mean().item(), "hand_norm": hand.norm(dim=-1).mean().item(),
            "nearest": [vocab[i] for i in nearest.argmax(-1).tolist()],
            "tc_last": last.get("tc"), "clip_last": last.get("clip")}


def extra_pairs(t, k: int) -> list[tuple]:
    """K more (A, A′) images with the triplet's change in other contexts, seeded by the triplet id."""
    rng = random.Random(f"extra-pairs:{t.triplet_id}")
    old, new = getattr(t.a, t.changed), getattr(t.a_prime, t.changed)
    out = []
    for _ in range(k):
        scene = Scene(*(rng.choice(ATTRIBUTES[name]) for name in ATTRIBUTE_NAMES)).replace(**{t.changed: old})
        seed = rng.randrange(2**31)
        out.append((render(scene, seed), render(scene.replace(**{t.changed: new}), seed)))
    return out


def shared_diff_tokens(models, config, triplets, images, k: int, seed: int, cache, per_batch: int,
                       target=None) -> list:
    """Per triplet one D̃ trained on its (A, A′) and `k` extra pairs of the same change
    (`train_diff_tokens_batch(groups=…)`), `per_batch` triplets' groups in one UNet batch.
    `target(t, a, a_prime)`: the CLIP term's target in place of the config's delta of each pair."""
    pipe, out = models.pipeline, []
    for start in range(0, len(triplets), per_batch):
        inputs, labels = [], []
        for j, (t, im) in enumerate(zip(triplets[start:start + per_batch], images[start:start + per_batch])):
            for a, a_prime in [(im["a"], im["a_prime"])] + extra_pairs(t, k):
                ids = [p.token_ids for p in di.prompts(models, [a, a_prime], config, seed, cache)]
                target_ = (target(t, a, a_prime) if target else
                           di.deltas(models, a, a_prime, config, cache).pick(config.delta))
                z_a, z_a_prime = encode_images(pipe, [a, a_prime]).chunk(2)  # E(A), E(A′): (1, C, h, w) each
                inputs.append(PairInputs(z_a, z_a_prime, ids[0], ids[1], target_, content_seed(seed, a, a_prime)))
                labels.append(j)
        results = train_diff_tokens_batch(pipe, models.joint_clip, inputs, config.training, groups=labels)
        out += [results[labels.index(j)] for j in sorted(set(labels))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True, help="toy benchmark seed (models.toy.world.make_triplets)")
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--settings", default="{}", help="DI settings as JSON, over the toy profile's defaults")
    parser.add_argument("--method", default="difference_inversion", help="DI or one of its ablations")
    parser.add_argument("--batch-size", type=int, default=8, help="D̃ trained this many pairs at a time")
    parser.add_argument("--hand-scales", default="3", help="extra scales of the hand-written direction")
    parser.add_argument("--conditions", help="only these conditions (comma-separated), e.g. 'learned'")
    parser.add_argument("--extra-pairs", type=int, default=0, help="K: add the learned_k condition")
    parser.add_argument("--ltc-draws", type=int, default=8, help="(t, noise) draws of the ltc_word_drop search")
    parser.add_argument("--rows", type=Path, help="write the per-(triplet, condition) rows here as JSON")
    parser.add_argument("--diffusion", type=Path,
                        help="a candidate toy diffusion pipeline folder in place of the shipped one (models.toy.train "
                             "--unet-out); the cache here is this process's own, so nothing mixes with the shipped one")
    args = parser.parse_args()

    scales = [float(s) for s in args.hand_scales.split(",") if s]
    conditions = BASE_CONDITIONS + tuple(f"hand_diff×{s:g}" for s in scales)
    conditions += OPT_IN if args.conditions else ()
    conditions += ("learned_k",) if args.extra_pairs else ()
    if args.conditions:
        unknown = set(args.conditions.split(",")) - set(conditions)
        if unknown:
            parser.error(f"unknown conditions {sorted(unknown)}; choose from {', '.join(conditions)}")
        conditions = tuple(c for c in conditions if c in args.conditions.split(","))
    models, cache, seed = ModelContext(), Cache(), 0
    if args.diffusion:
        models.profile = replace(models.profile, diffusion=str(args.diffusion))
    pipe, judge = models.pipeline, load_judge(models.profile)
    config = get_method(args.method).config(json.loads(args.settings), models.profile)
    table = pipe.text_encoder.get_input_embeddings().weight.detach()
    vocab = pipe.tokenizer.convert_ids_to_tokens(list(range(table.shape[0])))

    def ids(text: str) -> torch.Tensor:
        return token_ids(pipe, text)

    start = time.perf_counter()
    triplets = make_triplets(args.seed, args.n)
    images = [t.images() for t in triplets]
    learned = (di.prepare_diff_tokens(models, [(im["a"], im["a_prime"]) for im in images], config, seed=seed,
                                      cache=cache, batch_size=args.batch_size)
               if "learned" in conditions else [None] * len(triplets))
    shared = (shared_diff_tokens(models, config, triplets, images, args.extra_pairs, seed, cache,
                                 max(1, args.batch_size // (args.extra_pairs + 1)))
              if "learned_k" in conditions else [None] * len(triplets))
    def new_words(t, a, a_prime) -> torch.Tensor:  # n(ET(A′'s new phrase)): the CLIP target A′'s words meet
        return F.normalize(models.joint_clip.encode_texts([phrase(t.a_prime, t.changed)])[0], dim=-1)

    worded = (shared_diff_tokens(models, config, triplets, images, 0, seed, cache, args.batch_size, new_words)
              if "learned_word_clip" in conditions else [None] * len(triplets))
    train_s = time.perf_counter() - start
    rows = []
    for t, im, d, d_k, d_w in zip(triplets, images, learned, shared, worded):
        prompt_b = di.prompt(models, im["b"], config, seed, cache).token_ids
        old, new = ids(phrase(t.a, t.changed)), ids(phrase(t.a_prime, t.changed))
        hand = table[new] - table[old]
        hand = hand[hand.norm(dim=-1) > 0]  # the rows that differ: one for every attribute
        ids_b = torch.tensor(prompt_b)
        prompt_a, prompt_a_prime = (di.prompt(models, im[k], config, seed, cache).token_ids for k in ("a", "a_prime"))
        removed = changed_tokens(prompt_a, prompt_a_prime)[0]
        ids_b_drop = torch.tensor(without(prompt_b, removed))
        parts = {"nothing": [ids_b], "hand_diff": [ids_b, hand], "word": [ids_b, table[new]],
                 "hand_diff_first": [hand, ids_b], "word_first": [table[new], ids_b],
                 "oracle": [ids(caption(t.b_prime_gt))], "nothing_drop": [ids_b_drop],
                 "word_drop": [ids_b_drop, table[new]]}
        parts |= {f"hand_diff×{s:g}": [ids_b, s * hand] for s in scales}
        searched = {}
        if "ltc_word_drop" in conditions:
            short_a = training_prompts(prompt_a, prompt_a_prime, "drop")[0]
            best = ltc_best_token(pipe, encode_images(pipe, [im["a_prime"]]), short_a, args.ltc_draws,
                                  content_seed(seed, im["a"], im["a_prime"]))
            parts["ltc_word_drop"] = [ids_b_drop, table[best][None]]
            searched = {"searched_token": vocab[best], "searched_is_new_word": int(best in new.tolist())}
        extra = {name: dtilde_stats(trained, hand, table, vocab)
                 for name, trained in (("learned", d), ("learned_word_clip", d_w))}
        if d is not None and not isinstance(d, Exception):
            parts["learned"] = with_tokens(ids_b, d.tokens)
        hand_written = [name for name in conditions if name in parts and name != "learned"]
        images_out = dict(zip(hand_written, regenerate(pipe, im["b"], prompt_b, [parts[n] for n in hand_written],
                                                       config))) if hand_written else {}
        if "learned" in parts and "learned" in conditions:  # exactly the method's B′
            images_out["learned"] = di.apply_difference(pipe, im["b"], prompt_b, d.tokens, config, removed=removed)
        for name, trained in (("learned_k", d_k), ("learned_word_clip", d_w)):  # the method's path, another D̃
            if trained is not None and not isinstance(trained, Exception):
                images_out[name] = di.apply_difference(pipe, im["b"], prompt_b, trained.tokens, config,
                                                       removed=removed)
        reads = {name: judge.read([images_out[name]])[0] for name in conditions if name in images_out}
        for name, read in reads.items():
            score = judge_triplet(read, t.b.as_dict(), t.b_prime_gt.as_dict(), t.changed)
            rows.append({"triplet_id": t.triplet_id, "changed": t.changed, "condition": name, **score,
                         "read": read, "from": phrase(t.a, t.changed), "to": phrase(t.a_prime, t.changed),
                         **extra.get(name, {}), **(searched if name == "ltc_word_drop" else {})})
        learned_row = next((r for r in rows[-len(reads):] if r["condition"] == "learned"), {})
        print(t.triplet_id, t.changed, {n: int(r["joint"]) for n, r in zip(reads, rows[-len(reads):])},
              {k: (round(v, 3) if isinstance(v, float) else v) for k, v in learned_row.items()
               if k in ("cos_sum_hand", "max_row_cos_hand", "norm", "nearest")}, searched, flush=True)

    summary = {name: summarise([r for r in rows if r["condition"] == name]) for name in conditions}
    print(f"\n### toy seed {args.seed}, n = {args.n}, {args.method} {config.training_hash()} "
          f"({(time.perf_counter() - start) / 60:.1f} min, D̃ {train_s / 60:.1f} min)\n")
    attrs = ("background", "colour", "shape", "size")
    print("| condition | joint [95 % Wilson] | target | keep | " + " | ".join(attrs) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in attrs) + " |")
    for name, s in summary.items():
        low, high = s["ci95"].get("joint", [float("nan")] * 2)
        print(f"| {name} | {s['joint']:.3f} [{low:.3f}, {high:.3f}] | {s['target']:.3f} | {s['keep']:.3f} | "
              + " | ".join(f"{s['by_attribute'].get(a, {}).get('joint', float('nan')):.2f}" for a in attrs) + " |")
    searched_rows = [r for r in rows if r["condition"] == "ltc_word_drop"]
    if searched_rows:
        print(f"\nltc_word_drop: the searched token is A′'s new word in "
              f"{sum(r['searched_is_new_word'] for r in searched_rows)} of {len(searched_rows)} triplets")
    for name in ("learned", "learned_word_clip"):
        trained = [r for r in rows if r["condition"] == name and "cos_sum_hand" in r]
        if trained:
            by = {a: [r for r in trained if r["changed"] == a] for a in attrs}
            mean = {k: sum(r[k] or 0 for r in trained) / len(trained) for k in ("norm", "tc_last", "clip_last")}
            print(f"\n{name}: cos(ΣD̃, hand-written direction) by attribute: "
                  + ", ".join(f"{a} {sum(r['cos_sum_hand'] for r in v) / len(v):.3f}" for a, v in by.items() if v)
                  + "; mean " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    joint = {(r["triplet_id"], r["condition"]): r["joint"] for r in rows}
    for other in [c for c in conditions if c not in ("nothing", "learned")] if "learned" in conditions else []:
        both = [(joint.get((t.triplet_id, "learned")), joint.get((t.triplet_id, other))) for t in triplets]
        both = [(a, b) for a, b in both if a is not None and b is not None]
        print(f"paired learned vs {other}: learned only {sum(a > b for a, b in both)}, "
              f"{other} only {sum(b > a for a, b in both)}, both {sum(a == b == 1 for a, b in both)}")
    print(json.dumps({"seed": args.seed, "n": args.n, "method": args.method, "settings": json.loads(args.settings),
                      "summary": {k: {m: v[m] for m in ("joint", "target", "keep", "n", "ci95")}
                                  | {"by_attribute": {a: b["joint"] for a, b in v["by_attribute"].items()}}
                                  for k, v in summary.items()}}))
    if args.rows:
        args.rows.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
