"""How hard each term of Difference Inversion's loss pulls on D̃, on any profile whose models are here.

At the paper's weights (λtc = 0.01, λclip = 6) the toy's token-consistency gradient is about 1/400 of the
CLIP term's at the trained D̃ (docs/results.md#di-losses), which is why token consistency, the negation
and the start of D̃ change nothing there. Whether Stable Diffusion has the same balance is this script's
question: per (A, A′) pair it trains D̃ through the method's own steps (captions, CLIP deltas, prompts,
DIFF training at the profile's DI defaults over `--settings`), then reads, at zero rows and at D̃,

    clip   ‖∇ λclip·(1 − cos(ET([SOT, X, EOT]), Dinter))‖
    tc     ‖∇ λtc·Ltc(X)‖, Ltc averaged over `--draws` fixed (t, noise) draws (the expected pull; one
           training step feels one draw)

and prints each pair's two norms and their ratio, then the medians.

With `--compare`, the other half of the question: the D̃ each named DI preset (an ablation) or a new
training seed (`seed1`) ends at, and how differently the UNet reads it where B′ is generated, beside
B's prompt (generation's own sequence; A stands in for B where a pair names no B):

    cos    cos(D̃, X) over all rows
    read   mean ‖ε(X) − ε(D̃)‖ / mean ‖ε(D̃) − ε(B's prompt alone)‖ over `--draws` fixed (t, noise) draws
           of E(B): the gap between the two predictions against D̃'s own effect (CFG scales both alike)
    B′     PSNR (dB) of the B′ X generates against D̃'s (step 5 as the method runs it; 100 = identical)

A read no larger than `seed1`'s means generation takes the ablation's D̃ for D̃ (on the toy: token
consistency off and remove negation); a larger read that flips no judged attribute means the model
reads a difference the toy's 0/1 verdicts cannot see (docs/results.md#di-losses).

    python -m benchmarks.research.di_balance --toy-seed 219544 --n 8                       # toy profile
    python -m benchmarks.research.di_balance --toy-seed 263991 --n 8 \
        --compare seed1,di_no_token_consistency,di_random_init
    python -m benchmarks.research.di_balance --profile sd21-base --pairs a.png:a2.png:b.png c.png:c2.png:d.png \
        --compare seed1,di_no_token_consistency,di_remove_negation,di_random_init,di_text_delta   # a GPU, SD 2.1
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from PIL import Image

from benchmarks.research.di_losses import term_pulls
from evaluation.scoring.metrics import pixel_mse_psnr
from models.context import ModelContext
from models.toy.world import make_triplets
from ops import difference_inversion as di
from ops.cache import Cache
from ops.ddim import encode_images
from ops.diff_tokens import changed_tokens, generation_prompt, training_prompts, with_tokens
from ops.registry import get_method
from ops.text import DiffusionText


def pulls(models, config, a: Image.Image, a_prime: Image.Image, points: list[torch.Tensor], draws: int,
          cache: Cache) -> list[tuple[float, float]]:
    """(‖∇ λclip·Lclip‖, ‖∇ λtc·Ltc‖) at each of `points` for the pair (A, A′), from the method's own cached
    steps (the pair's target, prompts and latents read once)."""
    pipe, tsd = models.pipeline, DiffusionText(models.pipeline)
    target = di.deltas(models, a, a_prime, config, cache).pick(config.delta).to(tsd.device)
    ids = [p.token_ids for p in di.prompts(models, [a, a_prime], config, 0, cache)]
    ids_a, ids_a_prime = (torch.tensor(p) for p in training_prompts(*ids, config.changed_tokens))
    z = encode_images(pipe, [a, a_prime])  # E(A), E(A′)
    return [term_pulls(tsd, models.joint_clip, pipe.scheduler, config, z, ids_a, ids_a_prime, target, rows, draws)
            for rows in points]


@torch.no_grad()
def reading(models, config, a: Image.Image, a_prime: Image.Image, b: Image.Image, d: torch.Tensor,
            others: dict[str, torch.Tensor], draws: int, cache: Cache) -> dict[str, tuple[float, float]]:
    """{name: (read, B′ PSNR)} for each X of `others`. read: mean ‖ε(X) − ε(D̃)‖ / mean ‖ε(D̃) − ε(none)‖, ε
    the UNet's prediction on q(E(B), t, noise) conditioned as generation conditions B′ (B's prompt, without
    the changed tokens where config.changed_tokens='drop', X beside it), the same `draws` (t, noise) for all.
    B′ PSNR: the B′ that X generates against the one D̃ generates (the method's own step 5), in dB."""
    pipe, tsd = models.pipeline, DiffusionText(models.pipeline)
    prompt_a, prompt_a_prime, prompt_b = (p.token_ids for p in di.prompts(models, [a, a_prime, b], config, 0, cache))
    removed = changed_tokens(prompt_a, prompt_a_prime)[0]
    beside = torch.tensor(generation_prompt(prompt_b, removed, config.changed_tokens))
    z = encode_images(pipe, [b])
    generator = torch.Generator().manual_seed(1)
    t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (draws,), generator=generator).to(z.device)
    noise = torch.randn((draws, *z.shape[1:]), generator=generator).to(z.device, z.dtype)
    z_t = pipe.scheduler.add_noise(z.expand(draws, -1, -1, -1), noise, t)

    def eps(rows: torch.Tensor | None) -> torch.Tensor:
        parts = with_tokens(beside, rows.to(tsd.device) if rows is not None else None)
        cond = tsd.encode([parts]).expand(draws, -1, -1)
        return tsd.unet(z_t, t, encoder_hidden_states=cond).sample.flatten(1).float()

    def generate(rows: torch.Tensor) -> Image.Image:
        return di.apply_difference(pipe, b, prompt_b, rows, config, removed=removed)

    own, own_image = eps(d), generate(d)
    effect = (own - eps(None)).norm(dim=1).mean()
    return {name: (((eps(x) - own).norm(dim=1).mean() / effect).item(), pixel_mse_psnr(generate(x), own_image)[1])
            for name, x in others.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="toy", help="a model profile whose models are on this machine")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pairs", nargs="+", help="A.png:A2.png[:B.png] …: the (A, A′) pairs (B for --compare)")
    where.add_argument("--toy-seed", type=int, help="toy benchmark seed: its first --n pairs")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--settings", default="{}", help="DI settings as JSON, over the profile's defaults")
    parser.add_argument("--draws", type=int, default=8, help="(t, noise) draws per Ltc reading and per read")
    parser.add_argument("--compare", default="", help="comma-separated: DI presets (ablations) and/or seed1, "
                        "each D̃ read against D̃ (cos, read); '' for none")
    args = parser.parse_args()

    models, cache = ModelContext(args.profile), Cache()
    config = get_method("difference_inversion").config(json.loads(args.settings), models.profile)
    compared = {}
    for name in filter(None, args.compare.split(",")):  # a wrong name fails here, before any training
        try:
            other = config if name == "seed1" else get_method(name).config(json.loads(args.settings), models.profile)
        except (KeyError, ValueError) as exc:
            parser.error(f"--compare: {exc}")
        if not isinstance(other, di.DIConfig):
            parser.error(f"--compare: {name!r} is not a Difference Inversion preset")
        compared[name] = (other, 1 if name == "seed1" else 0)
    if args.pairs:
        triplets = []
        for spec in args.pairs:
            paths = spec.split(":")
            if len(paths) not in (2, 3):
                parser.error(f"--pairs takes A.png:A2.png or A.png:A2.png:B.png, got {spec!r}")
            images = [Image.open(path).convert("RGB") for path in paths]
            triplets.append((*images, images[0]) if len(images) == 2 else tuple(images))  # no B: A stands in
    else:
        triplets = [(im["a"], im["a_prime"], im["b"]) for im in (t.images() for t in make_triplets(args.toy_seed,
                                                                                                     args.n))]
    pairs = [(a, a_prime) for a, a_prime, _ in triplets]
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
        zero, at_d = pulls(models, config, a, a_prime, [torch.zeros_like(d.tokens), d.tokens], args.draws, cache)
        ratios.append(at_d[0] / max(at_d[1], 1e-12))
        print(f"| {i} | {zero[0]:.3g} | {zero[1]:.3g} | {at_d[0]:.3g} | {at_d[1]:.3g} | {ratios[-1]:.3g} |", flush=True)
    if ratios:
        print(f"\nmedian clip / tc at D̃: {statistics.median(ratios):.3g} over {len(ratios)} pairs")
    if not compared:
        return
    found = {name: di.prepare_diff_tokens(models, pairs, other, seed=seed, cache=cache, batch_size=8)
             for name, (other, seed) in compared.items()}
    print("\n| pair | " + " | ".join(f"cos, read, B′ dB: {name}" for name in compared) + " |")
    print("| --- |" + " --- |" * len(compared))
    table = {name: [] for name in compared}
    for i, ((a, a_prime, b), d) in enumerate(zip(triplets, trained)):
        others = {name: found[name][i] for name in compared}
        if isinstance(d, Exception) or any(isinstance(x, Exception) for x in others.values()):
            continue
        reads = reading(models, config, a, a_prime, b, d.tokens, {k: x.tokens for k, x in others.items()},
                        args.draws, cache)
        cells = []
        for name, x in others.items():
            cos = torch.nn.functional.cosine_similarity(d.tokens.flatten(), x.tokens.flatten(), dim=0).item()
            table[name].append((cos, *reads[name]))
            cells.append(f"{cos:.2f}, {reads[name][0]:.3f}, {reads[name][1]:.1f}")
        print(f"| {i} | " + " | ".join(cells) + " |", flush=True)
    print("\n| against D̃ | mean cos | mean read | median read | median B′ PSNR, dB |\n| --- | --- | --- | --- | --- |")
    for name, values in table.items():
        if values:
            cos, read, psnr = zip(*values)
            print(f"| {name} | {statistics.fmean(cos):.3f} | {statistics.fmean(read):.3f} | "
                  f"{statistics.median(read):.3f} | {statistics.median(psnr):.1f} |")


if __name__ == "__main__":
    main()
