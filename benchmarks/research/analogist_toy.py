"""What caps Analogist on the toy world: the VAE on a 2×2 grid. For the first N triplets of a toy
benchmark file, B is round-tripped through a VAE (encode, mode, decode) alone and inside the pasted
Analogist grid (its cell, and the pasted square inside the padding), and the judge reads all four
attributes back:

    python -m benchmarks.research.analogist_toy b600741.parquet --n 32 [--vae DIR] [--tiled]

`--vae`: another VAE folder (e.g. a decoder fine-tuned on grids: `python -m models.toy.train --only
inpaint --inpaint-decoder-steps 200 --inpaint-out DIR`, then DIR/vae); `--tiled`: diffusers' VAE tiling
at the cell size with no overlap (each cell encoded and decoded alone).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import benchmark_images, set_threads
from models.context import ModelContext
from models.loaders import load_judge
from ops import analogist as an


@torch.no_grad()
def round_trip(vae, image: Image.Image) -> Image.Image:
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    y = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return Image.fromarray(((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", type=Path)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--vae", type=Path, help="a VAE folder instead of the toy inpainter's")
    parser.add_argument("--tiled", action="store_true")
    args = parser.parse_args()
    set_threads()
    models = ModelContext()
    vae = models.inpainter.vae
    if args.vae:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.vae, dtype=torch.float32)
    if args.tiled:
        vae.enable_tiling()
        vae.tile_overlap_factor = 0.0
    judge, (rows, images) = load_judge(models.profile), benchmark_images(args.benchmark, args.n)
    size, padding = an.native_size(models.inpainter), an.AnalogistConfig().padding
    outs = {"alone": [], "cell": [], "inner": []}
    for im in images:
        a, a_prime, b = im["a"], im["a_prime"], im["b"]
        grid = round_trip(vae, an.paste_b(an.make_grid(a, a_prime, b, size // 2, padding)))
        outs["alone"].append(round_trip(vae, b))
        for crop in ("cell", "inner"):
            outs[crop].append(grid.crop(an.b_prime_box(size, padding, crop)).resize(b.size))
    wanted = [json.loads(r["b_attrs"]) for r in rows]
    result = {}
    for name, images in outs.items():
        reads = judge.read(images)
        result[name] = {k: round(sum(r[k] == w[k] for r, w in zip(reads, wanted)) / len(rows), 4) for k in wanted[0]}
        result[name]["all"] = round(sum(r == w for r, w in zip(reads, wanted)) / len(rows), 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
