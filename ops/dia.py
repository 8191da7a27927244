"""Diffusion Image Analogies (Šubrtová et al., SIGGRAPH 2023), the baseline, as the
authors' code (`subrtadel/DIA`, config/parameter_estimation.yaml) runs it.

    1. conditioning estimation for A, A′, B: N = 10 free input-token embeddings
       [SOT, k1…kN, EOT, EOT, …] through Tsd, fitted by the noise-prediction loss on
       8 views (original, h-flip, 6 random resized crops), one fixed timestep per view
       (indices 0–7 of the ascending 10-step schedule, t ≤ 701); AdamW lr 0.01 for 10
       steps, stopping once the loss is below 0.0008
    2. noise estimation for B: εB = √ᾱT·zB + √(1−ᾱT)·ε, refined by L-BFGS (lr 0.1,
       10 iterations of up to 20 evaluations, the same early stop) through the whole
       10-step DDIM sampling under cB (CFG 1; the switch `noise_guidance_scale` fits it
       at another CFG, e.g. the analogy's sc); loss = latent MSE + pixel MSE after decoding
    3. analogy: c = cB + st·(cA′ − cA); 10 DDIM steps (η = 0) from εB, CFG sc = 12
       against Tsd("")

Steps 1–2 depend on one image each and are cached by (image, estimation settings,
seed): an st or sc sweep, or a second triplet with the same B, re-estimates nothing.
Our reading differs from the official code in one place: SOT stays fixed (the
official code frees rows 0–9 of the embedded empty prompt, SOT included).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image

from ops.cache import Cache, config_hash, content_seed
from ops.ddim import (
    Schedule,
    ddim_move,
    ddim_sample,
    decode_latents,
    encode_latents,
    pipeline_size,
    predict,
)
from ops.diff_tokens import denoising_mse
from ops.images import to_pil, to_pixels
from ops.progress import reporter
from ops.text import encode_diffusion_text, encode_prompt, pipeline_specials

# st: the official notebook's linspace(0, 1.5, 20)[3]
ANALOGY_STRENGTH = 0.23684210526315788


@dataclass(frozen=True)
class DIAConfig:
    """Every knob of the method; defaults = the authors' code (config/parameter_estimation.yaml
    and its notebook)."""

    # 1. conditioning estimation
    n_tokens: int = 10  # N_tokens
    cond_steps: int = 10  # conditioning_optimization.opt_iters
    cond_lr: float = 0.01
    n_crops: int = 6  # + original + h-flip = batch_size 8 views
    crop_scale: tuple[float, float] = (0.85, 0.99)  # RandomResizedCrop(scale=(0.85, 0.99), ratio=(1, 1))
    token_init: str = "eot"  # eot (the official code starts from the tokens of "") | random
    # "official": view k gets index perm(k) of the ascending schedule, k < 8 (t ≤ 701 at 10 steps);
    # "all": 8 distinct levels drawn from the whole schedule (this project's wave-1 reading).
    cond_timesteps: str = "official"
    # sufficient_loss: both optimisers stop once their loss is below it (0 = never stop early)
    early_stop_loss: float = 0.0008
    # 2. noise estimation
    num_steps: int = 10  # ddim_steps: the short DDIM schedule of steps 1–3
    lbfgs_lr: float = 0.1  # noise_optimization.lr
    lbfgs_iterations: int = 10  # noise_optimization.opt_iters
    lbfgs_max_iter: int = 20  # evaluations per L-BFGS iteration (torch's default, as in the official code)
    pixel_weight: float = 1.0  # loss_weights['pixels']
    # CFG of the sampler εB is fitted through (official: 1). Set it to `guidance_scale` and
    # st = 0 samples exactly the fitted function, so B′ = B at any sc.
    noise_guidance_scale: float = 1.0
    # 3. analogy
    strength: float = ANALOGY_STRENGTH  # st
    guidance_scale: float = 12.0  # sc

    def __post_init__(self):
        if self.token_init not in ("eot", "random"):
            raise ValueError(f"token_init must be 'eot' or 'random', got {self.token_init!r}")
        if self.cond_timesteps not in ("official", "all"):
            raise ValueError(f"cond_timesteps must be 'official' or 'all', got {self.cond_timesteps!r}")
        if self.n_crops + 2 > self.num_steps:
            raise ValueError(f"{self.n_crops + 2} views need as many distinct timesteps; num_steps={self.num_steps}")

    def estimation_hash(self) -> str:
        """What steps 1–2 depend on (not st or sc, so a sweep of them reuses the estimates)."""
        return config_hash({k: v for k, v in asdict(self).items() if k not in ("strength", "guidance_scale")})


# ----------------------------------------------------------------------------- 1. conditioning


def views(image: Image.Image, size: int, n_crops: int, scale: tuple[float, float],
          generator: torch.Generator) -> torch.Tensor:
    """(2 + n_crops, 3, size, size) pixels: original, h-flip, square random resized crops."""
    image = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    out = [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    for _ in range(n_crops):
        u = torch.rand(3, generator=generator).tolist()
        side = size * math.sqrt(scale[0] + u[0] * (scale[1] - scale[0]))  # area fraction → side
        left, top = u[1] * (size - side), u[2] * (size - side)
        out.append(image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side)))
    return to_pixels(out, size)


def dia_sequence(table: torch.Tensor, tokens: torch.Tensor, specials) -> tuple[torch.Tensor, torch.Tensor]:
    """[SOT, k1…kN, EOT, EOT, …] (every position after the tokens is EOT, as in DIA)."""
    n_eot = specials.length - 1 - tokens.shape[0]
    embeds = torch.cat([table[specials.sot][None], tokens.to(table.dtype), table[specials.eot][None].expand(n_eot, -1)])
    ids = torch.tensor([specials.sot] + [specials.pad] * tokens.shape[0] + [specials.eot] * n_eot, device=table.device)
    return embeds, ids


def conditioning_loss(pipe, tokens: torch.Tensor, z: torch.Tensor, t: torch.Tensor,
                      noise: torch.Tensor) -> torch.Tensor:
    """Eq. 2: MSE between U(q(z, t, ε), t, Tsd([SOT, tokens, EOT…])) and ε (or the velocity)."""
    table = pipe.text_encoder.get_input_embeddings().weight.detach()
    cond = encode_diffusion_text(pipe.text_encoder, *dia_sequence(table, tokens, pipeline_specials(pipe)))
    return denoising_mse(pipe.unet, pipe.scheduler, z, noise, t, cond.expand(z.shape[0], -1, -1)).mean()


@dataclass
class Conditioning:
    tokens: torch.Tensor  # (N, D) in the token table's space
    cond: torch.Tensor  # Tsd(sequence), (1, L, H)
    curve: list[float] = field(default_factory=list)
    init: torch.Tensor | None = None  # the tokens before optimisation
    latents: torch.Tensor | None = None  # E(views)
    timesteps: torch.Tensor | None = None  # one per view


def estimate_conditioning(pipe, image: Image.Image, config: DIAConfig = DIAConfig(), seed: int = 0,
                          progress=None) -> Conditioning:
    """Step 1 for one image: fit N input-token embeddings so Tsd(them) predicts the image's noise."""
    unet, text_encoder, scheduler = pipe.unet, pipe.text_encoder, pipe.scheduler
    device = unet.device
    size = pipeline_size(pipe)
    table = text_encoder.get_input_embeddings().weight.detach()
    specials = pipeline_specials(pipe)
    generator = torch.Generator().manual_seed(seed)
    # 1a. the views, encoded once; one fixed timestep per view, distinct levels of the M-step schedule
    z = encode_latents(pipe.vae, views(image, size, config.n_crops, config.crop_scale, generator).to(device))
    schedule = Schedule(scheduler, config.num_steps)
    if config.cond_timesteps == "official":  # indices 0..7 of the ascending schedule, one per view
        t = schedule.timesteps.flip(0)[torch.randperm(z.shape[0], generator=generator)].to(device)
    else:
        t = schedule.timesteps[torch.randperm(config.num_steps, generator=generator)[: z.shape[0]]].to(device)
    # 1b. the free tokens
    if config.token_init == "eot":
        init = table[specials.eot].expand(config.n_tokens, -1).clone()
    else:
        init = table[torch.randint(table.shape[0] - 2, (config.n_tokens,), generator=generator).to(device)].clone()
    tokens = torch.nn.Parameter(init.clone())
    optimizer = torch.optim.AdamW([tokens], lr=config.cond_lr)
    curve = []
    progress = reporter(progress, "DIA conditioning")
    for step in range(config.cond_steps):
        # 1c. fresh noise every step; noise-prediction (or velocity) MSE over the views
        noise = torch.randn(z.shape, generator=generator).to(device, z.dtype)
        loss = conditioning_loss(pipe, tokens, z, t, noise)
        curve.append(loss.item())
        if loss.item() < config.early_stop_loss:  # checked before the step, as the official code does
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        progress(step + 1, config.cond_steps)
    with torch.no_grad():
        cond = encode_diffusion_text(text_encoder, *dia_sequence(table, tokens.detach(), specials))
    return Conditioning(tokens.detach(), cond, curve, init, z, t)


# ----------------------------------------------------------------------------- 2. noise


def denoise(unet, z: torch.Tensor, cond: torch.Tensor, schedule: Schedule, trajectory: bool = False,
            uncond: torch.Tensor | None = None, guidance: float = 1.0):
    """The whole M-step DDIM sampling (CFG 1 unless `guidance` and `uncond` say otherwise),
    differentiable (L-BFGS needs gradients through it; `ddim_sample` runs without them).
    Returns z0, or every level 0..M."""
    levels = [z]
    for level in range(len(schedule)):
        eps, x0 = predict(unet, z, schedule.timesteps[level], cond, schedule.alpha[level], schedule.prediction_type,
                          uncond, guidance)
        z = ddim_move(x0, eps, schedule.alpha[level + 1])
        levels.append(z)
    return levels if trajectory else z


def noise_guidance(pipe, config: DIAConfig) -> dict:
    """`denoise` keywords for the CFG εB is fitted (and B reconstructed) at."""
    if config.noise_guidance_scale == 1.0:
        return {}
    return {"uncond": encode_prompt(pipe, ""), "guidance": config.noise_guidance_scale}


@dataclass
class NoiseEstimate:
    noise: torch.Tensor  # εB, the latent at level 0 that reconstructs B under cB
    curve: list[float] = field(default_factory=list)  # loss at the start of each L-BFGS iteration, then the final


def estimate_noise(pipe, image: Image.Image, cond: torch.Tensor, config: DIAConfig = DIAConfig(),
                   seed: int = 0, progress=None) -> NoiseEstimate:
    """Step 2: εB such that the M-step sampling under `cond` (CFG `config.noise_guidance_scale`,
    official: 1) reproduces `image`."""
    unet, vae = pipe.unet, pipe.vae
    device = unet.device
    size = pipeline_size(pipe)
    pixels = to_pixels([image], size).to(device, vae.dtype)
    z_b = encode_latents(vae, pixels)
    schedule = Schedule(pipe.scheduler, config.num_steps)
    guidance = noise_guidance(pipe, config)
    # 2a. εB = √ᾱT·zB + √(1−ᾱT)·ε
    generator = torch.Generator().manual_seed(seed)
    a_t = schedule.alpha[0].to(device, z_b.dtype)
    noise = a_t.sqrt() * z_b + (1 - a_t).sqrt() * torch.randn(z_b.shape, generator=generator).to(device, z_b.dtype)
    noise = noise.clone(memory_format=torch.contiguous_format).requires_grad_(True)  # L-BFGS flattens views of grads

    def loss_fn() -> torch.Tensor:
        z = denoise(unet, noise, cond, schedule, **guidance)
        loss = F.mse_loss(z, z_b)
        if config.pixel_weight:
            decoded = vae.decode(z / vae.config.scaling_factor).sample
            loss = loss + config.pixel_weight * F.mse_loss(decoded, pixels)
        return loss

    # 2b. L-BFGS through the whole sampler
    optimizer = torch.optim.LBFGS([noise], lr=config.lbfgs_lr, max_iter=config.lbfgs_max_iter)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    curve = []
    progress = reporter(progress, "DIA noise (L-BFGS)")
    for it in range(config.lbfgs_iterations + 1):
        with torch.no_grad():
            curve.append(loss_fn().item())  # the loss at the start of this iteration
        if it == config.lbfgs_iterations or curve[-1] < config.early_stop_loss:
            break
        optimizer.step(closure)
        progress(it + 1, config.lbfgs_iterations)
    return NoiseEstimate(noise.detach(), curve)


# ----------------------------------------------------------------------------- 3. analogy


@torch.no_grad()
def analogy_latents(pipe, noise: torch.Tensor, cond_a: torch.Tensor, cond_a_prime: torch.Tensor,
                    cond_b: torch.Tensor, config: DIAConfig = DIAConfig(),
                    change_map: torch.Tensor | None = None) -> torch.Tensor:
    """B′'s latents: c = cB + st·(cA′ − cA), M DDIM steps from εB with CFG sc against Tsd("").
    `change_map` (1 = change fully, 0 = keep): kept pixels follow B's own reconstruction."""
    schedule = Schedule(pipe.scheduler, config.num_steps)
    cond = cond_b + config.strength * (cond_a_prime - cond_a)
    keep = None
    if change_map is not None:  # B's own reconstruction, under the guidance εB was fitted at
        keep = denoise(pipe.unet, noise, cond_b, schedule, trajectory=True, **noise_guidance(pipe, config))
    return ddim_sample(pipe.unet, noise, 0, cond, schedule, encode_prompt(pipe, ""), config.guidance_scale,
                       change_map=change_map, keep_latents=keep)


def dia(models, a: Image.Image, a_prime: Image.Image, b: Image.Image, config: DIAConfig = DIAConfig(), *,
        seed: int = 0, cache: Cache | None = None, change_map: torch.Tensor | None = None,
        instruction: str | None = None) -> Image.Image:
    """Diffusion Image Analogies: B′ from cB + st·(cA′ − cA), sampled from B's estimated noise.
    `change_map` (1 = change fully, 0 = keep): kept pixels follow B's own reconstruction."""
    pipe, cache = models.pipeline, cache or Cache()
    key = (models.weights_key, config.estimation_hash(), seed)

    # 1. conditionings of A, A′, B (one per image, seeded by its content)
    def conditioning(image: Image.Image) -> Conditioning:
        return cache("dia_conditioning", (*key, image), lambda: estimate_conditioning(
            pipe, image, config, content_seed(seed, "cond", image)))

    c_a, c_a_prime, c_b = conditioning(a), conditioning(a_prime), conditioning(b)
    # 2. εB
    noise = cache("dia_noise", (*key, b), lambda: estimate_noise(
        pipe, b, c_b.cond, config, content_seed(seed, "noise", b)))
    # 3. the analogy, sampled from εB
    z = analogy_latents(pipe, noise.noise, c_a.cond, c_a_prime.cond, c_b.cond, config, change_map)
    return to_pil(decode_latents(pipe.vae, z))[0]
