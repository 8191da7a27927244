"""The baselines' bar on the toy world (issue 4), read by the judge CLIP.

    python -m benchmarks.baselines_toy reliability [--n 32] [--seed 0] [--images renders|textured|composites]
                                                   [--space pixel|latent] [--vae DIR]
    python -m benchmarks.baselines_toy response [--n 32] [--seed 0] [--images …] [--m 0 0.25 0.5 0.75 0.9 1]
    python -m benchmarks.baselines_toy kept-half [--n 16] [--vae DIR]
    python -m benchmarks.baselines_toy dia-curve [--n 16] [--st 0 0.2368 0.5 1 1.5] [--sc 1 3 12]
    python -m benchmarks.baselines_toy judge [--n 16] [--methods sdedit differential_diffusion dia_captions]

Each prints a table and a last line of JSON. `--vae DIR`: decode (and encode) with another VAE
in the toy latent space (`python -m benchmarks.research.vae_locality`) instead of the pipeline's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.common import load_vae, rmse, set_threads
from evaluation.scoring.judge_scores import judge_triplet, summarise
from evaluation.scoring.reliability import reliability_score, toy_images
from models.loaders import load_judge, load_pipeline
from models.profiles import get_profile
from models.toy.world import make_triplets
from ops.dia import ANALOGY_STRENGTH


def toy_pipeline(args):
    """The toy models; for `--images textured` the textured world's (profile `toy-textured`)."""
    pipe = load_pipeline(get_profile("toy-textured" if getattr(args, "images", None) == "textured" else "toy"), "cpu")
    if args.vae:
        pipe.vae = load_vae(args.vae)
    return pipe


def reliability_images(args) -> list:
    """The score's image set: seeded toy renders; `--images textured`: the same scenes in the
    textured world; `--images composites`: two renders cut at a random column or row, as the VAE
    and the UNet's empty prompt are trained on."""
    if args.images in ("renders", "textured"):
        return toy_images(args.n, args.seed, textured=args.images == "textured")
    from models.toy.train import composites
    from ops.images import to_pil, to_pixels

    return to_pil(composites(to_pixels(toy_images(4 * args.n, args.seed), 32), args.n, args.seed))


def reliability(args) -> dict:
    """R in pixels (the paper's) or, with `--space latent`, on E(x) before the decoder."""
    from ops.ddim import encode_latents
    from ops.differential_diffusion import DDConfig, make_edit_fn, make_latent_edit_fn
    from ops.images import to_pixels

    pipe = toy_pipeline(args)
    config, images = DDConfig(num_steps=args.steps), reliability_images(args)
    if args.space == "latent":
        latents = encode_latents(pipe.vae, to_pixels(images, 32)).permute(0, 2, 3, 1).numpy()
        result = reliability_score(make_latent_edit_fn(pipe, config=config), list(latents), map_size=(32, 32))
    else:
        result = reliability_score(make_edit_fn(pipe, config=config), images)
    print(f"reliability R = {result['reliability']} ({args.space}) on {result['n']} toy images, {args.steps} steps, "
          f"empty prompt, {args.images} (seed {args.seed}); proportional ceiling {result['proportional_ceiling']}")
    for key in ("tau_gradient", "tau_all", "tau_hat"):
        print(f"{key:>13}: " + " ".join(f"{v:.3f}" for v in result[key]))
    return {k: result[k] for k in ("reliability", "proportional_ceiling", "n", "tau_gradient", "tau_all")} | {
        "steps": args.steps, "space": args.space, "images": args.images, "seed": args.seed}


def response(args) -> dict:
    """How the amount of change answers a *uniform* change map m (= img2img at strength m): the
    mean per-column change τ on the reliability score's images, and its ratio to m = 1. The score
    can only be linear in the column where this curve is, as a photo's is, close to linear in m."""
    from evaluation.scoring.reliability import column_trend
    from ops.differential_diffusion import DDConfig, make_edit_fn

    edit, images = make_edit_fn(toy_pipeline(args), config=DDConfig(num_steps=args.steps)), reliability_images(args)
    change = {m: float(column_trend(images, edit(images, torch.full((32, 32), m))).mean()) for m in args.m}
    full = change[max(args.m)]
    print(f"{'m':>6} {'τ':>7} {'τ / τ(max m)':>13}")
    for m, tau in change.items():
        print(f"{m:6.2f} {tau:7.4f} {tau / full:13.3f}")
    return {"n": args.n, "steps": args.steps, "m": args.m, "tau": [round(t, 5) for t in change.values()],
            "ratio": [round(t / full, 4) for t in change.values()]}


def kept_half(args) -> dict:
    """Binary map (left half keep, right half change) toward another caption: pixel RMSE to the
    VAE round trip on the kept half (minus one latent cell at the seam) and on the changed half,
    and the same for an oracle splice (kept latents exactly E(B), changed latents DD's): what
    the decoder alone spreads across the seam."""
    from models.toy.world import caption
    from ops.ddim import decode_latents, encode_latents
    from ops.differential_diffusion import DDConfig, differential_diffusion_latents
    from ops.images import to_pixels
    from ops.text import encode_prompt

    pipe = toy_pipeline(args)
    triplets = make_triplets(7, args.n)
    x = to_pixels([t.images()["b"] for t in triplets], 32)
    z0 = encode_latents(pipe.vae, x)
    round_trip = decode_latents(pipe.vae, z0)
    cond = torch.cat([encode_prompt(pipe, caption(t.b_prime_gt)) for t in triplets])
    m = torch.zeros(32, 32)
    m[:, 16:] = 1
    z = differential_diffusion_latents(pipe, z0, m, cond, encode_prompt(pipe, ""), DDConfig(args.steps),
                                       torch.Generator().manual_seed(0))
    out = decode_latents(pipe.vae, z)
    # The floor for any latent-space editor: kept latents exactly E(B), the changed half DD's own.
    oracle = decode_latents(pipe.vae, torch.cat([z0[..., :4], z[..., 4:]], dim=-1))

    row = {"n": args.n, "steps": args.steps,
           "vae_round_trip_rmse": rmse(round_trip, x),
           "kept_rmse_to_round_trip": rmse(out[..., :12], round_trip[..., :12]),
           "kept_seam_rmse_to_round_trip": rmse(out[..., 12:16], round_trip[..., 12:16]),
           "changed_rmse_to_round_trip": rmse(out[..., 16:], round_trip[..., 16:]),
           "oracle_kept_rmse_to_round_trip": rmse(oracle[..., :12], round_trip[..., :12]),
           "kept_rmse_to_oracle": rmse(out[..., :12], oracle[..., :12]),
           "kept_latent_rmse": rmse(z[..., :4], z0[..., :4]), "changed_latent_rmse": rmse(z[..., 4:], z0[..., 4:])}
    for k, v in row.items():
        print(f"{k:>32}: {v:.4f}" if isinstance(v, float) else f"{k:>32}: {v}")
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}


def judge_rows(method_outputs, triplets, judge) -> dict:
    reads = judge.read(method_outputs)
    rows = []
    for read, t in zip(reads, triplets, strict=True):
        rows.append({"changed": t.changed, "agree_b": float(read == t.b.as_dict()),
                     **judge_triplet(read, t.b.as_dict(), t.b_prime_gt.as_dict(), t.changed)})
    summary = summarise(rows)
    summary["agree_b"] = round(sum(r["agree_b"] for r in rows) / len(rows), 4)
    return summary


def dia_curve(args) -> dict:
    from models.context import ModelContext
    from ops.cache import Cache
    from ops.registry import MethodRun, get_method, run_method

    models, cache, method = ModelContext(device="cpu"), Cache(), get_method("dia")
    judge = load_judge(get_profile("toy"))
    triplets = make_triplets(args.seed, args.n)
    grid = [(sc, st) for sc in args.sc for st in args.st]
    runs = {(sc, st): MethodRun("dia", method, method.config({**args.dia, "strength": st, "guidance_scale": sc}))
            for sc, st in grid}
    outputs = {key: [] for key in grid}
    start = time.time()
    seconds = []
    for i, t in enumerate(triplets):
        im = t.images()
        for sc, st in grid:  # the estimates are cached: one estimation per triplet
            outputs[sc, st].append(run_method(runs[sc, st], models, im["a"], im["a_prime"], im["b"], cache=cache))
        seconds.append(time.time() - start - sum(seconds))
        print(f"triplet {i + 1}/{len(triplets)} ({time.time() - start:.0f} s)", flush=True)
    curve = {}
    print(f"{'sc':>5} {'st':>8} {'agree B':>8} {'target':>7} {'keep':>6} {'joint':>6}")
    for sc, st in grid:
        s = judge_rows(outputs[sc, st], triplets, judge)
        curve[f"sc={sc:g} st={st:.4f}"] = {k: s[k] for k in ("agree_b", "target", "keep", "joint")}
        print(f"{sc:>5g} {st:>8.4f} {s['agree_b']:>8.3f} {s['target']:>7.3f} {s['keep']:>6.3f} {s['joint']:>6.3f}")
    b_reads = judge_rows([t.images()["b"] for t in triplets], triplets, judge)["agree_b"]
    print(f"judge reads B itself correctly: {b_reads:.3f}")
    return {"n": args.n, "seed": args.seed, "dia": args.dia, "curve": curve, "judge_on_b": b_reads,
            "seconds": round(time.time() - start), "seconds_per_triplet": round(sum(seconds) / len(seconds), 1)}


def judge_methods(args) -> dict:
    from models.context import ModelContext
    from ops.cache import Cache
    from ops.registry import resolve_specs, run_method

    models, cache = ModelContext(device="cpu"), Cache()
    judge = load_judge(get_profile("toy"))
    triplets = make_triplets(args.seed, args.n)
    result = {}
    print(f"{'method':<24} {'agree B':>8} {'target':>7} {'keep':>6} {'joint':>6}")
    for run in resolve_specs(args.methods, models.profile):
        name = run.label
        outs = [run_method(run, models, (im := t.images())["a"], im["a_prime"], im["b"], cache=cache)
                for t in triplets]
        s = judge_rows(outs, triplets, judge)
        result[name] = {k: s[k] for k in ("agree_b", "target", "keep", "joint")}
        print(f"{name:<24} {s['agree_b']:>8.3f} {s['target']:>7.3f} {s['keep']:>6.3f} {s['joint']:>6.3f}")
    return {"n": args.n, "seed": args.seed, "methods": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["reliability", "response", "kept-half", "dia-curve", "judge"])
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--vae", type=Path, help="reliability, kept-half: a VAE folder in the toy latent space")
    parser.add_argument("--space", choices=["pixel", "latent"], default="pixel",
                        help="reliability: where τ is measured")
    parser.add_argument("--images", choices=["renders", "textured", "composites"], default="renders",
                        help="reliability, response: the image set (textured: with the toy-textured models)")
    parser.add_argument("--m", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9, 1.0],
                        help="response: uniform change maps")
    parser.add_argument("--st", type=float, nargs="+", default=[0.0, ANALOGY_STRENGTH, 0.5, 1.0, 1.5])
    parser.add_argument("--sc", type=float, nargs="+", default=[12.0], help="DIA guidance scales (paper: 12)")
    parser.add_argument("--methods", nargs="+", default=["sdedit", "differential_diffusion", "dia_captions"])
    parser.add_argument("--dia", type=json.loads, default={}, help="DIA overrides as a JSON object")
    args = parser.parse_args()
    set_threads()
    args.n = args.n or (32 if args.what in ("reliability", "response") else 16)
    fn = {"reliability": reliability, "response": response, "kept-half": kept_half, "dia-curve": dia_curve,
          "judge": judge_methods}[args.what]
    print(json.dumps({"what": args.what} | fn(args)))


if __name__ == "__main__":
    main()
