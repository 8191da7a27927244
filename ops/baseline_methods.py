"""DIA, DIA's caption baseline, Differential Diffusion and SDEdit as registered methods
`(ctx, a, a_prime, b, change_map=None, **settings) -> B′`.

Expensive intermediates (DIA's conditionings and εB, captions) are cached in the
context by content, so an st or guidance sweep re-estimates nothing. Every method
takes an optional `change_map` for B (1 = change fully, 0 = keep).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import torch
from PIL import Image

from ops.ddim import decode_latents
from ops.di_method import image_key
from ops.dia import (
    DIACaptionConfig,
    DIAConfig,
    analogy_latents,
    dia_captions,
    estimate_conditioning,
    estimate_noise,
    steps_for_profile,
)
from ops.differential_diffusion import DDConfig, differential_diffusion
from ops.images import to_pil
from ops.sdedit import SDEditConfig, sdedit

# Flat settings (paper values; None = the profile's default, see ops/dia.py).
DIA_DEFAULTS = {
    "n_tokens": 10, "cond_steps": None, "cond_lr": 0.01, "token_init": "eot", "num_steps": 10,
    "lbfgs_lr": 0.1, "lbfgs_iterations": 10, "lbfgs_max_iter": 20, "pixel_weight": 1.0, "noise_guidance_scale": 1.0,
    "strength": 0.23684210526315788, "guidance_scale": 12.0,
}
DIA_CAPTIONS_DEFAULTS = {"strength": 0.23684210526315788, "img2img_strength": 0.75, "num_steps": 50,
                         "guidance_scale": 7.5}
# text: "instruction" uses the triplet's instruction where the context has one, else A′'s caption.
SDEDIT_DEFAULTS = {"text": "instruction", "strength": 0.75, "num_steps": 50, "guidance_scale": 7.5}
# The text-guided editor as an analogy baseline: the instruction (or A′'s caption) applied to B
# with a uniform change map `change` (≈ SDEdit at that strength, one step more: keep_i = [μ > i/k]
# is strict), or with the spatial `change_map` the caller passes.
DD_DEFAULTS = {"text": "instruction", "change": 0.75, "num_steps": 50, "guidance_scale": 7.5}


def _seed(ctx, *parts) -> int:
    """Seeds from content and the user's seed: one image's estimate is the same in every triplet."""
    return int(hashlib.sha256(":".join(map(str, (ctx.seed, *parts))).encode()).hexdigest()[:8], 16)


def _caption(ctx, image: Image.Image) -> str:
    return ctx.cached(("caption", ctx.captioner.model_id, image_key(image)), lambda: ctx.captioner.caption([image])[0])


def _text(ctx, text: str, a_prime: Image.Image) -> str:
    """The edit text: the instruction where there is one (and asked for), else A′'s caption."""
    instruction = ctx.instruction
    return instruction if text == "instruction" and instruction else _caption(ctx, a_prime)


def dia_config(ctx, settings: dict) -> DIAConfig:
    flat = {k: v for k, v in settings.items() if v is not None}
    flat.setdefault("cond_steps", steps_for_profile(ctx.profile))
    return DIAConfig(**flat, seed=ctx.seed)


def dia_method(ctx, a: Image.Image, a_prime: Image.Image, b: Image.Image,
               change_map: torch.Tensor | None = None, **settings) -> Image.Image:
    """Diffusion Image Analogies: cB + st·(cA′ − cA) from B's estimated noise."""
    config = dia_config(ctx, settings)
    pipe = ctx.pipeline
    # what steps 1–2 depend on (not st or sc, so a sweep reuses them)
    estimation = {k: v for k, v in asdict(config).items() if k not in ("strength", "guidance_scale")}
    key = (ctx.profile.name, tuple(sorted(estimation.items())))

    def cond(image: Image.Image):
        return ctx.cached(("dia_cond", key, image_key(image)),
                          lambda: estimate_conditioning(pipe, image, config, _seed(ctx, "cond", image_key(image))))

    c_a, c_a_prime, c_b = cond(a), cond(a_prime), cond(b)
    noise = ctx.cached(("dia_noise", key, image_key(b)),
                       lambda: estimate_noise(pipe, b, c_b.cond, config, _seed(ctx, "noise", image_key(b))))
    z = analogy_latents(pipe, noise.noise, c_a.cond, c_a_prime.cond, c_b.cond, config, change_map)
    return to_pil(decode_latents(pipe.vae, z))[0]


def dia_captions_method(ctx, a: Image.Image, a_prime: Image.Image, b: Image.Image,
                        change_map: torch.Tensor | None = None, **settings) -> Image.Image:
    """DIA's synthetic baseline: caption features cB + st·(cA′ − cA), img2img on B."""
    img2img = SDEditConfig(settings["img2img_strength"], settings["num_steps"], settings["guidance_scale"])
    config = DIACaptionConfig(settings["strength"], img2img, ctx.seed)
    captions = (_caption(ctx, a), _caption(ctx, a_prime), _caption(ctx, b))
    return dia_captions(ctx.pipeline, captions, b, config, change_map)


def sdedit_method(ctx, a: Image.Image, a_prime: Image.Image, b: Image.Image,
                  change_map: torch.Tensor | None = None, **settings) -> Image.Image:
    """SDEdit: img2img on B toward the instruction (or A′'s caption)."""
    config = SDEditConfig(settings["strength"], settings["num_steps"], settings["guidance_scale"])
    return sdedit(ctx.pipeline, b, _text(ctx, settings["text"], a_prime), config, ctx.seed, change_map)


def differential_diffusion_method(ctx, a: Image.Image, a_prime: Image.Image, b: Image.Image,
                                  change_map: torch.Tensor | None = None, **settings) -> Image.Image:
    """Differential Diffusion on B toward the instruction (or A′'s caption), by a change map."""
    config = DDConfig(settings["num_steps"], settings["guidance_scale"])
    m = change_map if change_map is not None else torch.full((b.height, b.width), float(settings["change"]))
    return differential_diffusion(ctx.pipeline, [b], m, _text(ctx, settings["text"], a_prime), config, ctx.seed)[0]

