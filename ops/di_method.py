"""Difference Inversion as a registered method: each step cached by content in
the method context, so one D̃ serves every B and a generation sweep trains nothing
twice. The key functions are public so the pipeline can pre-fill the cache from
stored assets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

import torch
from PIL import Image

from ops.ddim import encode_latents
from ops.deltas import Deltas, clip_deltas
from ops.diff_tokens import DiffTokens, train_diff_tokens
from ops.difference_inversion import DIConfig, apply_difference, prompt_ids
from ops.images import to_pixels
from ops.pez import HardPrompt

# Flat settings a user (or an ablation) may override; None = the profile's default.
DI_DEFAULTS = {
    "delta": "interpolated", "alpha": 0.8, "prompt_source": "pez", "pez_tokens": 10, "pez_steps": None,
    "n_tokens": 5, "steps": None, "lr": 0.1, "weight_decay": 0.1, "lambda_tc": 0.01, "lambda_clip": 6.0,
    "token_consistency": True, "clip_loss": True, "init": "zero", "negation": "negate",
    "num_steps": 50, "guidance_scale": 7.5, "inversion_steps": 45, "seed": 0,
}

# The paper's ablations, each a method of its own (README: "Methods").
ABLATIONS = {
    "di_no_token_consistency": {"token_consistency": False},
    "di_no_clip_loss": {"clip_loss": False},
    "di_image_delta": {"delta": "image"},
    "di_text_delta": {"delta": "text"},
    "di_random_init": {"init": "random"},
    "di_remove_negation": {"negation": "remove"},
    "di_caption_prompts": {"prompt_source": "caption"},
}


def image_key(image: Image.Image) -> str:
    """Content hash of an image's pixels (mode and size included)."""
    h = hashlib.sha256(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()[:16]


def resolve_config(profile, settings: dict) -> DIConfig:
    """DIConfig from flat settings, None replaced by the profile's step counts."""
    flat = {k: v for k, v in settings.items() if v is not None}
    flat.setdefault("pez_steps", profile.pez_steps)
    flat.setdefault("steps", profile.diff_steps)
    return DIConfig().with_overrides(**flat)


def training_hash(config: DIConfig) -> str:
    """What D̃ depends on: every setting but the generation ones."""
    values = asdict(config)
    values.pop("generate")
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def content_seed(config: DIConfig, *images: Image.Image) -> int:
    """Seeds come from the content and the user's `seed`: D̃ of a pair is the same in
    every triplet, partition and run (SPEC §1.6: one seed per (pair, config))."""
    text = f"{config.diff.seed}:" + ":".join(image_key(im) for im in images)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def caption_key(ctx, image: Image.Image) -> tuple:
    return ("caption", ctx.captioner.model_id, image_key(image))


def prompt_key(ctx, image: Image.Image, config: DIConfig) -> tuple:
    return ("prompt", ctx.joint_clip.model_id, config.prompt_source, config.pez_tokens, config.pez_steps,
            config.diff.seed, image_key(image))


def deltas_key(ctx, a: Image.Image, a_prime: Image.Image, config: DIConfig) -> tuple:
    return ("deltas", ctx.joint_clip.model_id, ctx.captioner.model_id, config.alpha, image_key(a), image_key(a_prime))


def diff_key(ctx, a: Image.Image, a_prime: Image.Image, config: DIConfig) -> tuple:
    return ("diff_tokens", ctx.profile.name, training_hash(config), image_key(a), image_key(a_prime))


def caption(ctx, image: Image.Image) -> str:
    return ctx.cached(caption_key(ctx, image), lambda: ctx.captioner.caption([image])[0])


def prompt(ctx, image: Image.Image, config: DIConfig) -> HardPrompt:
    return ctx.cached(prompt_key(ctx, image, config), lambda: prompt_ids(
        ctx.pipeline, ctx.joint_clip, image, caption(ctx, image), config, content_seed(config, image)))


def deltas(ctx, a: Image.Image, a_prime: Image.Image, config: DIConfig) -> Deltas:
    return ctx.cached(deltas_key(ctx, a, a_prime, config), lambda: clip_deltas(
        ctx.joint_clip, a, a_prime, caption(ctx, a), caption(ctx, a_prime), alpha=config.alpha))


def diff_tokens(ctx, a: Image.Image, a_prime: Image.Image, config: DIConfig) -> DiffTokens:
    def train() -> DiffTokens:
        pipe = ctx.pipeline
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        z = encode_latents(pipe.vae, to_pixels([a, a_prime], size).to(pipe.device))
        target = deltas(ctx, a, a_prime, config).pick(config.delta)
        return train_diff_tokens(pipe, ctx.joint_clip, z[:1], z[1:], prompt(ctx, a, config).token_ids,
                                 prompt(ctx, a_prime, config).token_ids, target,
                                 replace(config.diff, seed=content_seed(config, a, a_prime)))

    return ctx.cached(diff_key(ctx, a, a_prime, config), train)


def generate(ctx, a: Image.Image, a_prime: Image.Image, b: Image.Image,
             change_map: torch.Tensor | None = None, **settings) -> Image.Image:
    """Difference Inversion: B′ from (A, A′, B)."""
    config = resolve_config(ctx.profile, settings)
    if getattr(ctx.pipeline, "text_encoder_2", None) is not None:
        raise NotImplementedError(f"Difference Inversion with two text encoders (profile {ctx.profile.name!r}, SDXL) "
                                  "is not implemented yet; use sd21-base, sd21, sd15 or toy")
    tokens = diff_tokens(ctx, a, a_prime, config).tokens
    return apply_difference(ctx.pipeline, b, prompt(ctx, b, config).token_ids, tokens, config.generate, change_map)
