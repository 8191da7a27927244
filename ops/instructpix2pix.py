"""InstructPix2Pix (Brooks et al.): edit B by a written instruction with the profile's instruction
editor, a UNet that reads the noisy latent and B's latent side by side (8 input channels).

As an analogy baseline the instruction is the triplet's (the oracle text: what a person would
write after looking at A and A′), else A′'s caption; `text="empty"` edits with no text at all.

    0. the text: the instruction, else A′'s caption ("empty": "")
    1. the image condition c_I = E(B), the posterior mode *unscaled* (as diffusers' pipeline feeds it)
    2. texts: c_T = Tsd(text), ∅ = Tsd(negative prompt)
    3. from pure noise, with the editor's own scheduler (Euler ancestral for `timbrooks/instruct-pix2pix`),
       three-way classifier-free guidance at every step:
           ε = ε(z, ∅, 0) + s_T·(ε(z, c_T, c_I) − ε(z, ∅, c_I)) + s_I·(ε(z, ∅, c_I) − ε(z, ∅, 0))
       (with a change map, 1 = change fully: a pixel with change m evolves freely for the last m of the
       steps; before that it is re-injected from B's latent noised to the current level with the start noise)
    4. B′ = D(z)

`edit_latents` is step 1–3 on given text states, so VISII (ops.visii) samples with its learned
instruction through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from ops.cache import Cache
from ops.captions import edit_text
from ops.ddim import decode_latents, pipeline_size, resize_change_map
from ops.images import to_pil, to_pixels
from ops.progress import reporter
from ops.text import encode_prompt

IP2P_TEXTS = ("instruction", "caption", "empty")


@dataclass(frozen=True)
class IP2PConfig:
    """InstructPix2Pix's knobs: diffusers' `StableDiffusionInstructPix2PixPipeline` defaults (100 steps,
    text guidance 7.5, image guidance 1.5: the paper's baseline setting)."""

    num_steps: int = 100
    guidance_scale: float = 7.5  # s_T
    image_guidance_scale: float = 1.5  # s_I
    negative_prompt: str = ""
    # the edit text: "instruction" (the triplet's, else A′'s caption) | "caption" (A′'s) | "empty" (none)
    text: str = "instruction"

    def __post_init__(self):
        if self.text not in IP2P_TEXTS:
            raise ValueError(f"text must be one of {IP2P_TEXTS}, got {self.text!r}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {self.num_steps}")


@torch.no_grad()
def image_condition(pipe, images: list[Image.Image]) -> torch.Tensor:
    """c_I: the VAE posterior's mode of each image at the editor's size, unscaled, in the UNet's dtype."""
    pixels = to_pixels(images, pipeline_size(pipe)).to(pipe.device, pipe.vae.dtype)
    return pipe.vae.encode(pixels).latent_dist.mode().to(pipe.unet.dtype)


def guided_noise(unet, z_in: torch.Tensor, t, cond: torch.Tensor, uncond: torch.Tensor,
                 image_latents: torch.Tensor, guidance_scale: float, image_guidance_scale: float) -> torch.Tensor:
    """The three-way-guided ε at the UNet input `z_in` (the scheduler's `scale_model_input` already
    applied): one UNet call on the batch [text+image, image, neither], or the text+image branch alone
    where guidance is off (s_T ≤ 1 or s_I < 1, diffusers' rule)."""
    guided = guidance_scale > 1.0 and image_guidance_scale >= 1.0
    n = z_in.shape[0]
    if not guided:
        return unet(torch.cat([z_in, image_latents], dim=1), t, cond.expand(n, -1, -1)).sample
    if torch.is_tensor(t) and t.numel() > 1:  # one timestep per batch row
        t = t.repeat(3)
    zs = torch.cat([z_in] * 3)
    images = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])
    texts = torch.cat([cond.expand(n, -1, -1), uncond.expand(n, -1, -1), uncond.expand(n, -1, -1)])
    eps_text, eps_image, eps_none = unet(torch.cat([zs, images], dim=1), t, texts).sample.chunk(3)
    return eps_none + guidance_scale * (eps_text - eps_image) + image_guidance_scale * (eps_image - eps_none)


@torch.no_grad()
def edit_latents(pipe, b: Image.Image, cond: torch.Tensor, uncond: torch.Tensor, *, num_steps: int,
                 guidance_scale: float, image_guidance_scale: float, generator: torch.Generator,
                 change_map: torch.Tensor | None = None, progress=None) -> torch.Tensor:
    """Steps 1–3: the edited latents of B under text states `cond` (1, L, H) against `uncond`.

    Draws its noise from `generator` in diffusers' order (the initial latents, then each ancestral
    step's), so without a change map it is `StableDiffusionInstructPix2PixPipeline(..., generator)`."""
    progress = reporter(progress, "InstructPix2Pix sampling")
    scheduler, unet = pipe.scheduler, pipe.unet
    # 1. c_I
    image_latents = image_condition(pipe, [b])
    # 3. from pure noise
    scheduler.set_timesteps(num_steps, device=pipe.device)
    shape = (1, pipe.vae.config.latent_channels, *image_latents.shape[-2:])
    noise = randn_tensor(shape, generator=generator, device=pipe.device, dtype=unet.dtype)
    z = noise * scheduler.init_noise_sigma
    keep_mu = z_b = None
    if change_map is not None:  # Differential Diffusion's re-injection, from B noised with the start noise
        keep_mu = 1 - resize_change_map(change_map, tuple(shape[-2:])).to(z)
        z_b = image_latents * pipe.vae.config.scaling_factor
    timesteps = scheduler.timesteps
    for step, t in enumerate(timesteps):
        if keep_mu is not None:
            keep = (keep_mu > step / len(timesteps)).to(z.dtype)
            z = scheduler.add_noise(z_b, noise, t.reshape(1)) * keep + z * (1 - keep)
        eps = guided_noise(unet, scheduler.scale_model_input(z, t), t, cond, uncond, image_latents,
                           guidance_scale, image_guidance_scale)
        z = scheduler.step(eps, t, z, generator=generator).prev_sample
        progress(step + 1, len(timesteps))
    return z


@torch.no_grad()
def edit_image(pipe, b: Image.Image, text: str, config: IP2PConfig = IP2PConfig(), seed: int = 0,
               change_map: torch.Tensor | None = None) -> Image.Image:
    """B edited by `text`: steps 2–4."""
    # 2. texts
    cond, uncond = encode_prompt(pipe, text), encode_prompt(pipe, config.negative_prompt)
    # 1, 3. sample
    z = edit_latents(pipe, b, cond, uncond, num_steps=config.num_steps, guidance_scale=config.guidance_scale,
                     image_guidance_scale=config.image_guidance_scale,
                     generator=torch.Generator().manual_seed(seed), change_map=change_map)
    # 4. decode
    return to_pil(decode_latents(pipe.vae, z))[0]


def instructpix2pix(models, a: Image.Image, a_prime: Image.Image, b: Image.Image, config: IP2PConfig = IP2PConfig(),
                    *, seed: int = 0, cache: Cache | None = None, change_map: torch.Tensor | None = None,
                    instruction: str | None = None) -> Image.Image:
    """InstructPix2Pix as an analogy baseline: B edited by the triplet's instruction (or A′'s caption)."""
    # 0. the text
    text = "" if config.text == "empty" else edit_text(models, config.text, instruction, a_prime, cache or Cache())
    return edit_image(models.editor, b, text, config, seed, change_map)
