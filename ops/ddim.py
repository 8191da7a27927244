"""DDIM (η = 0) inversion and sampling with classifier-free guidance, ε- or
v-prediction, and an optional per-pixel change map (Differential Diffusion).

The schedule is the pipeline scheduler's: `timesteps[0]` is the noisiest,
`timesteps[-1]` the cleanest. "Level i" means the latent at `timesteps[i]`;
level N (N = number of steps) is the clean latent z0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ops.images import to_pil, to_pixels
from ops.progress import reporter
from ops.text import encode_prompt


class Schedule:
    """ᾱ at each level of an N-step DDIM schedule of a diffusers scheduler."""

    def __init__(self, scheduler, num_steps: int):
        scheduler.set_timesteps(num_steps)
        self.timesteps = scheduler.timesteps.clone()
        self.prediction_type = scheduler.config.prediction_type
        alphas = scheduler.alphas_cumprod
        clean = alphas[0] if not scheduler.config.get("set_alpha_to_one", False) else torch.tensor(1.0)
        self.alpha = torch.cat([alphas[self.timesteps], clean[None]])  # levels 0..N

    def __len__(self) -> int:
        return len(self.timesteps)


def predict(unet, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, alpha: torch.Tensor,
            prediction_type: str, uncond: torch.Tensor | None = None, guidance: float = 1.0):
    """(ε, x0) at ᾱ = `alpha`, with CFG `uncond + g·(cond − uncond)` when g ≠ 1."""
    if uncond is not None and guidance != 1.0:
        out_u, out_c = unet(torch.cat([z, z]), t, torch.cat([uncond, cond])).sample.chunk(2)
        out = out_u + guidance * (out_c - out_u)
    else:
        out = unet(z, t, cond).sample
    a = alpha.to(z.dtype)
    if prediction_type == "epsilon":
        eps = out
        x0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
    elif prediction_type == "v_prediction":
        x0 = a.sqrt() * z - (1 - a).sqrt() * out
        eps = a.sqrt() * out + (1 - a).sqrt() * z
    else:
        raise ValueError(f"unsupported prediction type {prediction_type!r}")
    return eps, x0


def ddim_move(x0: torch.Tensor, eps: torch.Tensor, alpha_to: torch.Tensor) -> torch.Tensor:
    """The deterministic DDIM update: the latent at ᾱ = `alpha_to` with the same (x0, ε)."""
    return alpha_to.sqrt() * x0 + (1 - alpha_to).sqrt() * eps


@torch.no_grad()
def ddim_invert(unet, z0: torch.Tensor, cond: torch.Tensor, schedule: Schedule, steps: int) -> list[torch.Tensor]:
    """Invert z0 through the `steps` cleanest levels (CFG 1). Returns the trajectory
    [level N (z0), level N−1, …, level N−steps]; the last is where sampling restarts.

    Standard DDIM inversion, as diffusers' DDIMInverseScheduler does it: going from
    level j+1 to level j, the UNet is evaluated at the target timestep on the current
    latent, and its output is read (ε and x0; for v-prediction the v → ε, x0
    conversion) with ᾱ of the current latent's level."""
    n = len(schedule)
    trajectory = [z0]
    z = z0
    for level in range(n - 1, n - 1 - steps, -1):
        eps, x0 = predict(unet, z, schedule.timesteps[level], cond, schedule.alpha[level + 1], schedule.prediction_type)
        z = ddim_move(x0, eps, schedule.alpha[level])
        trajectory.append(z)
    return trajectory


class NoisedLatents:
    """q(z0, t_i) with one fixed `noise` at every level, computed when indexed (memory stays
    two latents however many steps): [level 0 (noisiest), …, level N−1, level N = z0].
    The forward-noised trajectory that SDEdit starts from and Differential Diffusion re-injects."""

    def __init__(self, scheduler, z0: torch.Tensor, noise: torch.Tensor, schedule: Schedule):
        self.scheduler, self.z0, self.noise, self.timesteps = scheduler, z0, noise, schedule.timesteps

    def __len__(self) -> int:
        return len(self.timesteps) + 1

    def __getitem__(self, level: int) -> torch.Tensor:
        if not -len(self) <= level < len(self):
            raise IndexError(f"level {level} outside 0..{len(self) - 1}")
        level %= len(self)
        if level == len(self.timesteps):
            return self.z0
        return self.scheduler.add_noise(self.z0, self.noise, self.timesteps[level].reshape(1))


def resize_change_map(change_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) or (B, 1, H, W) change map in [0, 1] (1 = change fully) → (B, 1, h, w)."""
    m = change_map.float()
    while m.dim() < 4:
        m = m[None]
    if m.shape[-2:] != size:
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    return m.clamp(0, 1)


@torch.no_grad()
def ddim_sample(unet, z_start: torch.Tensor, start_level: int, cond: torch.Tensor, schedule: Schedule,
                uncond: torch.Tensor | None = None, guidance: float = 7.5,
                change_map: torch.Tensor | None = None, keep_latents: list[torch.Tensor] | None = None,
                progress=None) -> torch.Tensor:
    """Denoise from level `start_level` to z0.

    With a `change_map` m (1 = change fully, 0 = keep; Differential Diffusion's
    μ = 1 − m), `keep_latents[i]` is the original's latent at level i: before each
    step after the first, pixels still to be kept (μ > fraction of steps done) are
    re-injected from it, so a pixel with change m evolves freely for the last
    m·k steps only (Differential Diffusion's future hinting)."""
    progress = reporter(progress, "DDIM sampling")
    n = len(schedule)
    k = n - start_level
    keep_mu = None
    if change_map is not None:
        if keep_latents is None:
            raise ValueError("a change map needs the original's latents at every level (keep_latents)")
        keep_mu = 1 - resize_change_map(change_map, tuple(z_start.shape[-2:])).to(z_start)
    z = z_start
    for step, level in enumerate(range(start_level, n)):
        if keep_mu is not None and step > 0:
            keep = (keep_mu > step / k).to(z.dtype)
            z = keep_latents[level] * keep + z * (1 - keep)
        eps, x0 = predict(unet, z, schedule.timesteps[level], cond, schedule.alpha[level],
                          schedule.prediction_type, uncond, guidance)
        z = ddim_move(x0, eps, schedule.alpha[level + 1])
        progress(step + 1, k)
    return z


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    """E(x), scaled (pixels in [−1, 1], (B, 3, H, W)): the posterior mean of a KL VAE (SD's), or
    the latents of a deterministic one (AutoencoderTiny, TAESD)."""
    out = vae.encode(pixels.to(vae.device, vae.dtype))
    latents = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latents
    return latents * vae.config.scaling_factor


@torch.no_grad()
def decode_latents(vae, z: torch.Tensor) -> torch.Tensor:
    """D(z) of scaled latents, in the VAE's dtype (SDXL's runs in fp32 beside an fp16 UNet)."""
    return vae.decode(z.to(vae.dtype) / vae.config.scaling_factor).sample.clamp(-1, 1)


def pipeline_size(pipe) -> int:
    """The pixel size the pipeline's UNet works at."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


@torch.no_grad()
def encode_images(pipe, images: list) -> torch.Tensor:
    """E(x) of PIL images resized to the pipeline's size, scaled, in the UNet's dtype: (B, C, h, w)."""
    return encode_latents(pipe.vae, to_pixels(images, pipeline_size(pipe)).to(pipe.device)).to(pipe.unet.dtype)


@torch.no_grad()
def vae_round_trip(pipe, images: list) -> list:
    """D(E(x)) of PIL images at the pipeline's size."""
    return to_pil(decode_latents(pipe.vae, encode_images(pipe, images)))


@torch.no_grad()
def ddim_reconstruct(pipe, images: list, prompts: list[str], steps: int = 50) -> tuple[list, float]:
    """Images DDIM-inverted through all `steps` with their prompts (CFG 1) and sampled back with the
    same prompts (CFG 1): (the rebuilt images, the latent RMSE against E(x))."""
    z0 = encode_images(pipe, images)
    cond = torch.cat([encode_prompt(pipe, p) for p in prompts])
    schedule = Schedule(pipe.scheduler, steps)
    z_t = ddim_invert(pipe.unet, z0, cond, schedule, steps)[-1]
    z = ddim_sample(pipe.unet, z_t, 0, cond, schedule, guidance=1.0)
    return to_pil(decode_latents(pipe.vae, z)), (z - z0).pow(2).mean().sqrt().item()
