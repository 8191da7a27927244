"""Does a D̃ carry A's content onto B when the prompts leave that content unnamed?

The parts of Difference Inversion that the toy's ablations never separate (token consistency with its
negation, zero init) are there, the paper says, to keep what A and A′ share out of D̃, so that B′ does
not pick it up. On the toy every prompt names all four attributes (the captioner is exact), so there is
nothing of A's content that D̃ could hold and the prompt not already say. Here the toy captioner is
made to leave one attribute out (retrieval over captions without it, as a photo captioner leaves out
what it does not mention), D̃ is trained and applied by each named preset as `analogy bench` runs it,
and the judge reads B′. On triplets whose changed attribute is another one:

    joint  the judge's verdict (target and keep), as `analogy bench`
    leak   where A and B differ in the unnamed attribute: B′ shows A's value of it
    other  the same triplets: B′ shows a value that is neither A's nor B's (the chance control; with
           k values each wrong value has 1/(k−2) of it)

Two pseudo-methods read D̃ itself: `zero_rows` generates B′ as the method's step 5 does with D̃ at its zero
start (what generation does to B whatever D̃ holds), `negated:SPEC` with −D̃ of the Difference Inversion
spec SPEC (does the model read the sign the negation in token consistency relies on?).

    python -m benchmarks.research.di_leak --toy-seed 263991 --n 24 --unnamed background \
        --methods difference_inversion,di_remove_negation,di_no_token_consistency,di_random_init,no_edit
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from evaluation.scoring.judge_scores import judge_triplet
from evaluation.scoring.stats import estimate, paired
from models.context import ModelContext
from models.loaders import load_clip, load_judge, retrieval_captioner
from models.toy.world import ATTRIBUTE_NAMES, ATTRIBUTES, all_scenes, make_triplets, phrase
from ops import difference_inversion as di
from ops.cache import PREPARE_BATCH_SIZE, Cache
from ops.diff_tokens import changed_tokens
from ops.registry import MethodRun, get_method, resolve_specs, run_method


def unnamed_caption(scene, unnamed: str) -> str:
    """The scene's caption without one attribute, in the form the toy models were trained on
    (`varied_caption` with that phrase dropped, canonical order)."""
    text = ", ".join(phrase(scene, name) for name in ATTRIBUTE_NAMES if name != unnamed)
    return text if text.startswith("on ") else f"a {text}"


@dataclass
class UnnamingContext(ModelContext):
    """The toy profile's models, its captioner retrieving over captions that leave `unnamed` out."""

    unnamed: str = "background"

    @cached_property
    def captioner(self):
        vocabulary = tuple(sorted({unnamed_caption(s, self.unnamed) for s in all_scenes()}))
        return retrieval_captioner(load_clip(self.profile.joint_clip), vocabulary)

    @cached_property
    def weights_key(self) -> str:
        return f"{super().weights_key}+unnamed:{self.unnamed}"


def with_rows(models, config, a, a_prime, b, cache: Cache, seed: int, rows):
    """B′ by the method's step 5 beside the prompts it reads (step 3), with `rows(prompt_a, prompt_a_prime,
    prompt_b)` in D̃'s place."""
    prompt_a, prompt_a_prime, prompt_b = (p.token_ids for p in di.prompts(models, [a, a_prime, b], config, seed, cache))
    return di.apply_difference(models.pipeline, b, prompt_b, rows(prompt_a, prompt_a_prime, prompt_b), config,
                               removed=changed_tokens(prompt_a, prompt_a_prime)[0])


def zero_rows(models, config, a, a_prime, b, cache: Cache, seed: int):
    """B′ with D̃ at its zero start: what generation does to B beside the (unnaming) prompts whatever D̃ holds."""
    shape = (config.n_tokens, models.pipeline.text_encoder.config.hidden_size)
    return with_rows(models, config, a, a_prime, b, cache, seed, lambda *_: torch.zeros(shape))


def negated(models, config, a, a_prime, b, cache: Cache, seed: int):
    """B′ with −D̃ in D̃'s place, D̃ from the method's step 4 (so one it trained in this process comes from the
    cache)."""
    target = di.deltas(models, a, a_prime, config, cache).pick(config.delta)

    def minus_d(prompt_a, prompt_a_prime, prompt_b):
        return -di.diff_tokens(models, a, a_prime, prompt_a, prompt_a_prime, target, config, seed, cache,
                               b, prompt_b).tokens

    return with_rows(models, config, a, a_prime, b, cache, seed, minus_d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toy-seed", type=int, required=True)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--unnamed", choices=ATTRIBUTE_NAMES, default="background")
    parser.add_argument("--methods", required=True, help="comma-separated method specs, as `analogy bench`")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--named", action="store_true", help="the control: the exact captioner, leak still "
                        "read on --unnamed")
    parser.add_argument("--rows", help="write per-(method, triplet) rows as JSON lines here")
    args = parser.parse_args()

    models = ModelContext("toy") if args.named else UnnamingContext("toy", unnamed=args.unnamed)
    names = args.methods.split(",")
    runs = resolve_specs([m for m in names if m != "zero_rows" and not m.startswith("negated:")], models.profile)
    pseudo = {}  # pseudo-method label → (generator, its DI config)
    for name in names:
        if name == "zero_rows":  # D̃ = 0 at DI's settings, beside the same prompts
            pseudo[name] = (zero_rows, get_method("difference_inversion").config({}, models.profile))
        elif name.startswith("negated:"):
            (inner,) = resolve_specs([name.removeprefix("negated:")], models.profile)
            if inner.method.fn is not di.difference_inversion:
                raise ValueError(f"{name}: negated: takes a Difference Inversion spec")
            pseudo[name] = (negated, inner.config)
    runs += [MethodRun(name, None, config) for name, (_, config) in pseudo.items()]
    judge, cache = load_judge(models.profile), Cache()
    triplets = [t for t in make_triplets(args.toy_seed, args.n) if t.changed != args.unnamed]
    images = [t.images() for t in triplets]
    k = len(ATTRIBUTES[args.unnamed])
    print(f"seed {args.toy_seed}: {len(triplets)} triplets (changed ≠ {args.unnamed}), "
          f"{sum(getattr(t.a, args.unnamed) != getattr(t.b, args.unnamed) for t in triplets)} with A's "
          f"{args.unnamed} ≠ B's; captions: {models.captioner.caption([images[0]['a']])[0]!r} …", flush=True)
    rows = []
    for run in runs:
        if run.method is not None and run.method.prepare is not None:
            run.method.prepare(models, [(im["a"], im["a_prime"]) for im in images], run.config, seed=args.seed,
                               cache=cache, batch_size=PREPARE_BATCH_SIZE)
        outputs = [pseudo[run.label][0](models, run.config, im["a"], im["a_prime"], im["b"], cache, args.seed)
                   if run.method is None else
                   run_method(run, models, im["a"], im["a_prime"], im["b"], seed=args.seed, cache=cache,
                              instruction=t.instruction) for t, im in zip(triplets, images)]
        for t, read in zip(triplets, judge.read(outputs)):
            a_value, b_value = getattr(t.a, args.unnamed), getattr(t.b, args.unnamed)
            row = {"method": run.label, "triplet_id": t.triplet_id, "changed": t.changed,
                   **judge_triplet(read, t.b.as_dict(), t.b_prime_gt.as_dict(), t.changed),
                   "differs": a_value != b_value, "read": read[args.unnamed]}
            row["leak"] = float(row["differs"] and read[args.unnamed] == a_value)
            row["other"] = float(row["differs"] and read[args.unnamed] not in (a_value, b_value))
            rows.append(row)
        mine = [r for r in rows if r["method"] == run.label]
        differ = [r for r in mine if r["differs"]]
        joint = estimate([r["joint"] for r in mine], binary=True)
        leak = estimate([r["leak"] for r in differ], binary=True) if differ else None
        other = sum(r["other"] for r in differ) / max(1, len(differ)) / max(1, k - 2)
        print(f"{run.label}: joint {joint.mean:.3f} [{joint.ci95_low:.2f}, {joint.ci95_high:.2f}]; "
              f"leak {leak.mean if leak else float('nan'):.3f} of {len(differ)} "
              f"(each other value {other:.3f})", flush=True)
    if args.rows:
        Path(args.rows).write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = runs[0].label
    for run in runs[1:]:
        for score in ("joint", "leak"):
            first, second = ({r["triplet_id"]: r[score] for r in rows
                              if r["method"] == label and (score == "joint" or r["differs"])}
                             for label in (base, run.label))
            p = paired(first, second)
            print(f"{base} vs {run.label}, {score}: only {base} {p.first_only}, only the other {p.second_only}, "
                  f"p {p.p_value:.3g}")


if __name__ == "__main__":
    main()
