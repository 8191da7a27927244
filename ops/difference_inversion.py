"""Difference Inversion (Kim et al.), end to end, readable top to bottom.

    1. captions of A and A′                         (captioner)
    2. CLIP deltas Dimg, Dtxt → Dinter = slerp      (ops.deltas)
    3. PEZ hard prompts of A, A′ (and B)            (ops.pez)
    4. DIFF tokens D̃ from (A, A′)                   (ops.diff_tokens)
    5. B′: DDIM-invert B with prompt_B, denoise with [SOT, prompt_B, D̃, EOT]

`ops/di_method.py` chains these steps for a triplet (each cached by content);
the Dagster assets run the same steps one by one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

import torch
from PIL import Image

from ops.ddim import Schedule, ddim_invert, ddim_sample, decode_latents, encode_latents
from ops.deltas import DELTA_KINDS
from ops.diff_tokens import DiffConfig
from ops.images import to_pil, to_pixels
from ops.pez import HardPrompt, pez_prompt
from ops.text import encode_diffusion_text, encode_prompt, pipeline_specials, token_sequence


@dataclass(frozen=True)
class GenerateConfig:
    num_steps: int = 50
    guidance_scale: float = 7.5
    # SPEC §1.5: invert through this many of the `num_steps` and denoise them back.
    # 45 = the default reading of "start step 45 out of 50"; 5 = the other reading.
    inversion_steps: int = 45

    def __post_init__(self):
        if not 1 <= self.inversion_steps <= self.num_steps:
            raise ValueError(f"inversion_steps must be in 1..{self.num_steps}, got {self.inversion_steps}")


@dataclass(frozen=True)
class DIConfig:
    """Every switch of the method and its ablations; paper values as defaults."""

    delta: str = "interpolated"  # interpolated | image | text
    alpha: float = 0.8
    prompt_source: str = "pez"  # pez | caption
    pez_tokens: int = 10
    pez_steps: int = 3000
    diff: DiffConfig = field(default_factory=DiffConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)

    def __post_init__(self):
        if self.delta not in DELTA_KINDS:
            raise ValueError(f"delta must be one of {DELTA_KINDS}, got {self.delta!r}")
        if self.prompt_source not in ("pez", "caption"):
            raise ValueError(f"prompt_source must be 'pez' or 'caption', got {self.prompt_source!r}")

    def with_overrides(self, **flat) -> DIConfig:
        """Override by flat names: top-level fields, DiffConfig's or GenerateConfig's."""
        top = {k: v for k, v in flat.items() if k in self.__dataclass_fields__}
        diff = {k: v for k, v in flat.items() if k in DiffConfig.__dataclass_fields__}
        gen = {k: v for k, v in flat.items() if k in GenerateConfig.__dataclass_fields__}
        unknown = set(flat) - set(top) - set(diff) - set(gen)
        if unknown:
            raise ValueError(f"unknown Difference Inversion settings: {sorted(unknown)}")
        return replace(self, diff=replace(self.diff, **diff), generate=replace(self.generate, **gen), **top)


def config_hash(config) -> str:
    """Short content hash of a (nested) dataclass config: names outputs."""
    text = json.dumps(asdict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prompt_ids(pipe, clip, image: Image.Image, caption: str, config: DIConfig, seed: int) -> HardPrompt:
    """PEZ hard prompt of an image, or (prompt_source='caption') its caption's token ids."""
    if config.prompt_source == "pez":
        return pez_prompt(clip, [image], n_tokens=config.pez_tokens, steps=config.pez_steps, seed=seed)
    ids = pipe.tokenizer(caption, add_special_tokens=False).input_ids
    return HardPrompt(ids, caption, float("nan"))


@torch.no_grad()
def apply_difference(pipe, b: Image.Image, prompt_b: list[int], tokens: torch.Tensor,
                     config: GenerateConfig = GenerateConfig(), change_map: torch.Tensor | None = None,
                     progress=None) -> Image.Image:
    """Generate B′ from B, B's prompt ids and D̃ (SPEC §1.5).

    With `change_map` (1 = change fully, 0 = keep) the difference is applied
    only there, Differential-Diffusion style, re-injecting B's own inversion
    trajectory where it must be kept."""
    device = pipe.unet.device
    table = pipe.text_encoder.get_input_embeddings().weight
    specials = pipeline_specials(pipe)
    ids_b = torch.tensor(prompt_b)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor

    # 1. E(B)
    z0 = encode_latents(pipe.vae, to_pixels([b], size).to(device))
    # 2. conditionings: B's prompt alone (inversion), with D̃ (generation), and Tsd("") for CFG
    cond_b = encode_diffusion_text(pipe.text_encoder, *token_sequence(table, [ids_b], specials))
    cond_diff = encode_diffusion_text(pipe.text_encoder, *token_sequence(table, [ids_b, tokens.to(device)], specials))
    uncond = encode_prompt(pipe, "")
    # 3. DDIM-invert B through `inversion_steps` levels (CFG 1)
    schedule = Schedule(pipe.scheduler, config.num_steps)
    trajectory = ddim_invert(pipe.unet, z0, cond_b, schedule, config.inversion_steps)
    start = config.num_steps - config.inversion_steps
    # 4. denoise with the DIFF conditioning and CFG
    keep = None
    if change_map is not None:
        keep = {config.num_steps - i: z for i, z in enumerate(trajectory)}  # level → latent
    z = ddim_sample(pipe.unet, trajectory[-1], start, cond_diff, schedule, uncond, config.guidance_scale,
                    change_map=change_map, keep_latents=keep, progress=progress)
    # 5. decode
    return to_pil(decode_latents(pipe.vae, z))[0]
