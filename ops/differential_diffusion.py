"""Differential Diffusion (Levin & Fried): text-guided editing with a per-pixel
amount of change.

Public convention everywhere in this project: the **change map** m ∈ [0, 1],
1 = change fully, 0 = keep. (The paper and its code use μ = 1 − m, white = keep;
we never expose μ, and never call it a "mask".)

    1. z0 = E(x); one fixed noise ε; noised_i = q(z0, t_i, ε) at every level i
    2. m down-sampled to the latent size (inside `ddim_sample`)
    3. step 0 starts from noised_0; before each later step i (noisiest first) a latent
       pixel still to be kept (μ = 1 − m > i/k) is replaced by noised_i ("future
       hinting": kept pixels see the original at every step up to their own)
    4. x′ = D(z)

m = 1 everywhere is plain text-to-image from noised_0; m = 0 returns x up to the VAE.

As an analogy baseline (`differential_diffusion`) the text is the triplet's
instruction (or A′'s caption) and the map is the caller's change map, or a
uniform one of `change` (≈ SDEdit at that strength, one step more: keep_i =
[μ > i/k] is strict).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ops.cache import Cache
from ops.captions import check_text_source, edit_text
from ops.ddim import NoisedLatents, Schedule, ddim_sample, decode_latents, encode_images
from ops.images import to_pil
from ops.text import encode_prompt


@dataclass(frozen=True)
class DDConfig:
    """The official implementation's defaults (50 DDIM steps, CFG 7.5)."""

    num_steps: int = 50
    guidance_scale: float = 7.5
    negative_prompt: str = ""
    # As an analogy baseline: the edit text ("instruction": the triplet's, else A′'s caption |
    # "caption") and the uniform change used when the caller gives no change map.
    text: str = "instruction"
    change: float = 0.75

    def __post_init__(self):
        check_text_source(self.text)
        if not 0.0 <= self.change <= 1.0:
            raise ValueError(f"change must be in [0, 1], got {self.change}")


def as_change_map(change_map) -> torch.Tensor:
    """A change map (1 = change fully, 0 = keep) as a float tensor in [0, 1].

    Accepts a tensor or array in [0, 1] ((H, W) or (B, 1, H, W)), or a greyscale
    PIL image where white (255) = change fully."""
    if isinstance(change_map, Image.Image):
        change_map = np.asarray(change_map.convert("L"), dtype=np.float32) / 255.0
    m = torch.as_tensor(change_map, dtype=torch.float32)
    if not torch.isfinite(m).all():
        raise ValueError("a change map must be finite (it holds NaN or inf)")
    if m.min() < 0 or m.max() > 1:
        raise ValueError(f"a change map must lie in [0, 1] (1 = change fully), got [{m.min():.3g}, {m.max():.3g}]")
    return m


@torch.no_grad()
def differential_diffusion_latents(pipe, z0: torch.Tensor, change_map: torch.Tensor, cond: torch.Tensor,
                                   uncond: torch.Tensor, config: DDConfig = DDConfig(),
                                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Edited latents of `z0` (B, C, h, w). `change_map`: 1 = change fully, 0 = keep."""
    schedule = Schedule(pipe.scheduler, config.num_steps)
    # 1. one fixed noise → noised_i at every level (level N = z0 itself)
    noise = torch.randn(z0.shape, generator=generator).to(z0.device, z0.dtype)
    noised = NoisedLatents(pipe.scheduler, z0, noise, schedule)
    # 2–3. denoise from noised_0, re-injecting kept pixels (ddim_sample implements step 3 exactly)
    uncond = uncond.expand(z0.shape[0], -1, -1)
    cond = cond.expand(z0.shape[0], -1, -1)
    return ddim_sample(pipe.unet, noised[0], 0, cond, schedule, uncond, config.guidance_scale,
                       change_map=as_change_map(change_map).to(z0.device), keep_latents=noised)


@torch.no_grad()
def differential_diffusion_images(pipe, images: list[Image.Image], change_map, prompt: str,
                           config: DDConfig = DDConfig(), seed: int = 0) -> list[Image.Image]:
    """Edit `images` toward `prompt` by `change_map` (1 = change fully, 0 = keep; one map
    for every image, or one per image as (B, 1, H, W))."""
    # 1. E(x)
    z0 = encode_images(pipe, images)
    # 2. texts
    cond, uncond = encode_prompt(pipe, prompt), encode_prompt(pipe, config.negative_prompt)
    # 3. the edit
    z = differential_diffusion_latents(pipe, z0, change_map, cond, uncond, config,
                                       torch.Generator().manual_seed(seed))
    # 4. decode
    return to_pil(decode_latents(pipe.vae, z))


def make_edit_fn(pipe, prompt: str = "", config: DDConfig = DDConfig(), seed: int = 0,
                 batch_size: int = 16) -> Callable[[list[Image.Image], torch.Tensor], list[Image.Image]]:
    """`edit(images, change_map) -> images` for the reliability score (the paper uses the
    empty prompt). Every call uses the same seeds, so two maps are compared on the same noise."""

    def edit(images: list[Image.Image], change_map: torch.Tensor) -> list[Image.Image]:
        out = []
        for start in range(0, len(images), batch_size):
            out += differential_diffusion_images(pipe, images[start:start + batch_size], change_map, prompt,
                                          config, seed + start)
        return out

    return edit


def make_latent_edit_fn(pipe, prompt: str = "", config: DDConfig = DDConfig(), seed: int = 0):
    """The same editor on latents given as (h, w, C) arrays (E(x), channels last): the reliability
    score measured before the VAE decoder, which separates the sampler from the decoder's locality."""

    def edit(latents: list, change_map: torch.Tensor) -> list:
        z0 = torch.stack([torch.as_tensor(np.asarray(z), dtype=torch.float32) for z in latents]).permute(0, 3, 1, 2)
        cond, uncond = encode_prompt(pipe, prompt), encode_prompt(pipe, config.negative_prompt)
        z = differential_diffusion_latents(pipe, z0.to(pipe.device, pipe.unet.dtype), change_map, cond, uncond, config,
                                           torch.Generator().manual_seed(seed))
        return list(z.permute(0, 2, 3, 1).float().cpu().numpy())

    return edit


def differential_diffusion(models, a: Image.Image, a_prime: Image.Image, b: Image.Image,
                           config: DDConfig = DDConfig(), *, seed: int = 0, cache: Cache | None = None,
                           change_map: torch.Tensor | None = None, instruction: str | None = None) -> Image.Image:
    """Differential Diffusion as an analogy baseline: B edited toward the instruction (or A′'s
    caption) by the change map (1 = change fully), or by a uniform `config.change`."""
    # 1. the text
    text = edit_text(models, config.text, instruction, a_prime, cache or Cache())
    # 2. the map
    m = change_map if change_map is not None else torch.full((b.height, b.width), float(config.change))
    # 3. the edit
    return differential_diffusion_images(models.pipeline, [b], m, text, config, seed)[0]
