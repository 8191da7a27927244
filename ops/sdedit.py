"""SDEdit (Meng et al.): img2img — noise B part of the way, denoise it with a text.

As an analogy baseline the text is the triplet's instruction (or A′'s caption).

    0. the text: the instruction, else A′'s caption
    1. z0 = E(B); one fixed noise ε (seeded)
    2. start level = N − ⌊strength·N⌋ (diffusers' img2img rule); z = q(z0, t_start, ε)
    3. DDIM (η = 0) from there to z0 with CFG against Tsd(negative prompt)
       (optionally with a change map, 1 = change fully: Differential Diffusion inside the edit)
    4. B′ = D(z)

`img2img` works on conditioning tensors, so DIA's caption baseline (text-feature
algebra → img2img) reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ops.cache import Cache
from ops.captions import check_text_source, edit_text
from ops.ddim import NoisedLatents, Schedule, ddim_sample, decode_latents, encode_images
from ops.images import to_pil
from ops.text import encode_prompt


@dataclass(frozen=True)
class SDEditConfig:
    """img2img knobs. 0.75 is the Stable Diffusion reference img2img script's strength
    (SDEdit's own paper uses t0 ∈ [0.3, 0.6]); 50 DDIM steps and CFG 7.5 as everywhere else."""

    strength: float = 0.75
    num_steps: int = 50
    guidance_scale: float = 7.5
    negative_prompt: str = ""
    # the edit text: "instruction" (the triplet's, else A′'s caption) | "caption" (A′'s caption)
    text: str = "instruction"

    def __post_init__(self):
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")
        check_text_source(self.text)


def start_level(num_steps: int, strength: float) -> int:
    """The schedule level img2img starts from: strength 1 → level 0 (pure sampling), 0 → N (no edit)."""
    return num_steps - min(int(num_steps * strength), num_steps)


@torch.no_grad()
def img2img(pipe, z0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, config: SDEditConfig = SDEditConfig(),
            generator: torch.Generator | None = None, change_map: torch.Tensor | None = None) -> torch.Tensor:
    """Latents of the edit of `z0` (B, C, h, w) under `cond` (B, L, H).

    `change_map` (1 = change fully, 0 = keep) limits the edit per pixel: a pixel with
    change m evolves freely for the last m of the img2img steps, and is re-injected
    from the same noised trajectory before that."""
    schedule = Schedule(pipe.scheduler, config.num_steps)
    start = start_level(config.num_steps, config.strength)
    if start == config.num_steps:
        return z0  # strength 0: nothing to denoise
    # 1. one fixed noise → the forward-noised trajectory of z0
    noise = torch.randn(z0.shape, generator=generator).to(z0.device, z0.dtype)
    noised = NoisedLatents(pipe.scheduler, z0, noise, schedule)
    # 2. denoise from the start level
    uncond = uncond.expand(z0.shape[0], -1, -1)
    return ddim_sample(pipe.unet, noised[start], start, cond, schedule, uncond, config.guidance_scale,
                       change_map=change_map, keep_latents=noised if change_map is not None else None)


@torch.no_grad()
def sdedit_image(pipe, image: Image.Image, prompt: str, config: SDEditConfig = SDEditConfig(), seed: int = 0,
                 change_map: torch.Tensor | None = None) -> Image.Image:
    """Edit `image` toward `prompt` at `config.strength`. `change_map`: 1 = change fully, 0 = keep."""
    # 1. E(B)
    z0 = encode_images(pipe, [image])
    # 2. texts
    cond, uncond = encode_prompt(pipe, prompt), encode_prompt(pipe, config.negative_prompt)
    # 3. img2img
    z = img2img(pipe, z0, cond, uncond, config, torch.Generator().manual_seed(seed), change_map)
    # 4. decode
    return to_pil(decode_latents(pipe.vae, z))[0]


def sdedit(models, a: Image.Image, a_prime: Image.Image, b: Image.Image, config: SDEditConfig = SDEditConfig(), *,
           seed: int = 0, cache: Cache | None = None, change_map: torch.Tensor | None = None,
           instruction: str | None = None) -> Image.Image:
    """SDEdit as an analogy baseline: img2img on B toward the instruction (or A′'s caption)."""
    text = edit_text(models, config.text, instruction, a_prime, cache or Cache())
    return sdedit_image(models.pipeline, b, text, config, seed, change_map)
