"""Is a VAE for the toy pipeline local, and does it draw shapes well enough? Compares the
shipped toy VAE with a candidate in the same latent space (e.g. the experimental
AutoencoderTiny of `python -m models.toy.train --only tiny_vae`):

    python -m benchmarks.research.vae_locality [--candidate .analogy/experiments/tiny_vae]

Per VAE: the judge's shape accuracy after a round trip (seen and held-out (colour, shape)
pairs; `analogy toy check` needs ≥ 0.94 over all scenes); locality: two renders' latents
spliced at latent column c, RMSE of the decoded pixel columns more than one cell from the
seam against the first render's own decode (next to the round-trip RMSE). Last line: JSON.
Differential Diffusion with the candidate: `python -m benchmarks.baselines_toy reliability|kept-half --vae DIR`.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import torch

from benchmarks.common import load_vae, rmse, set_threads
from models.loaders import load_judge, load_pipeline
from models.profiles import get_profile
from models.toy.world import all_scenes, render, training_scenes
from ops.ddim import decode_latents, encode_latents
from ops.images import to_pil, to_pixels


def shape_accuracy(vae, judge, n: int = 256) -> dict:
    rng = random.Random(2)  # the scenes and renders of `analogy toy check`'s VAE row
    scenes = [rng.choice(all_scenes()) for _ in range(n)]
    x = to_pixels([render(s, rng.randrange(2**31)) for s in scenes], 32)
    round_trip = decode_latents(vae, encode_latents(vae, x))
    reads = judge.read(to_pil(round_trip))
    right = [r["shape"] == s.shape for r, s in zip(reads, scenes, strict=True)]
    seen = [ok for ok, s in zip(right, scenes, strict=True) if not s.held_out]
    held = [ok for ok, s in zip(right, scenes, strict=True) if s.held_out]
    errors = Counter(f"{s.size} {s.shape}→{r['shape']}"
                     for r, s, ok in zip(reads, scenes, right, strict=True) if not ok)
    return {"shape_all": round(sum(right) / n, 4), "shape_seen": round(sum(seen) / len(seen), 4),
            "shape_held_out": round(sum(held) / len(held), 4), "errors": dict(errors.most_common(4)),
            "round_trip_rmse": round(rmse(round_trip, x), 4)}


def locality(vae, n: int = 64) -> dict:
    rng = random.Random(5)
    first, second = ([render(rng.choice(training_scenes()), rng.randrange(2**31)) for _ in range(n)] for _ in range(2))
    z1, z2 = encode_latents(vae, to_pixels(first, 32)), encode_latents(vae, to_pixels(second, 32))
    own = decode_latents(vae, z1)
    out = {}
    for cut in (2, 3, 4):
        spliced = decode_latents(vae, torch.cat([z1[..., :cut], z2[..., cut:]], dim=-1))
        kept = slice(0, 4 * (cut - 1))  # pixel columns more than one latent cell from the seam
        per_image = [rmse(spliced[i, ..., kept], own[i, ..., kept]) for i in range(n)]
        out[f"cut{cut}"] = {"kept_rmse": round(rmse(spliced[..., kept], own[..., kept]), 4),
                            "worst_image": round(max(per_image), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidate", type=Path, help="a diffusers VAE folder in the toy latent space")
    args = parser.parse_args()
    set_threads()
    profile = get_profile("toy")
    pipe, judge = load_pipeline(profile, "cpu"), load_judge(profile)
    vaes = {"shipped": pipe.vae} | ({"candidate": load_vae(args.candidate)} if args.candidate else {})
    results = {}
    for name, vae in vaes.items():
        results[name] = row = shape_accuracy(vae, judge) | {"locality": locality(vae)}
        print(f"{name:>9}: shape {row['shape_all']:.3f} (seen {row['shape_seen']:.3f}, held out "
              f"{row['shape_held_out']:.3f}), round trip {row['round_trip_rmse']:.3f}, kept RMSE by cut "
              + ", ".join(f"{k} {v['kept_rmse']:.3f}" for k, v in row["locality"].items()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
