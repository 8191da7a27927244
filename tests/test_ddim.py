"""DDIM inversion and sampling on the committed toy pipeline."""

import torch

from models.toy.world import Scene, caption, render
from ops.ddim import Schedule, ddim_invert, ddim_sample, encode_latents
from ops.images import to_pixels
from ops.text import encode_prompt


def test_inversion_then_regeneration_reconstructs_the_latent(pipe):
    scenes = [Scene("large", "blue", "square", "white"), Scene("small", "orange", "circle", "black")]
    images = [render(s, seed=i) for i, s in enumerate(scenes)]
    z0 = encode_latents(pipe.vae, to_pixels(images, 32))
    cond = torch.cat([encode_prompt(pipe, caption(s)) for s in scenes])
    schedule = Schedule(pipe.scheduler, 50)
    trajectory = ddim_invert(pipe.unet, z0, cond, schedule, 50)
    assert len(trajectory) == 51
    # the first inversion step (t = 1) barely moves z0; the last lands far from it
    assert (trajectory[1] - z0).abs().mean() < 0.05 < (trajectory[-1] - z0).abs().mean()
    rebuilt = ddim_sample(pipe.unet, trajectory[-1], 0, cond, schedule, guidance=1.0)
    rmse = (rebuilt - z0).pow(2).mean().sqrt().item()
    # Latents have unit variance (scaling factor fitted on the training renders), so an RMSE of
    # 0.1 is a 10 % error: the judge reads such reconstructions correctly (see `analogy toy check`).
    assert rmse < 0.1, rmse
    # a different prompt does not reconstruct as well: the check is not vacuous
    other = torch.cat([encode_prompt(pipe, caption(s.replace(colour="green", shape="star"))) for s in scenes])
    wrong = ddim_sample(pipe.unet, trajectory[-1], 0, other, schedule, guidance=7.5)
    assert (wrong - z0).pow(2).mean().sqrt().item() > 2 * rmse


def test_partial_inversion_starts_at_the_right_level(pipe):
    schedule = Schedule(pipe.scheduler, 50)
    assert schedule.timesteps[0] > schedule.timesteps[-1]
    assert len(schedule.alpha) == 51 and schedule.alpha[-1] > schedule.alpha[-2] > schedule.alpha[0]
    z0 = torch.randn(1, 4, 8, 8)
    cond = encode_prompt(pipe, "a small red circle on a white background")
    traj = ddim_invert(pipe.unet, z0, cond, schedule, 5)
    assert len(traj) == 6


@torch.no_grad()
def _diffusers_inversion(unet, scheduler_config, z0, cond, num_steps, steps):
    from diffusers import DDIMInverseScheduler

    inverse = DDIMInverseScheduler.from_config(scheduler_config)
    inverse.set_timesteps(num_steps)
    z, out = z0, [z0]
    for t in inverse.timesteps[:steps]:
        z = inverse.step(unet(z, t, cond).sample, t, z).prev_sample
        out.append(z)
    return out


import pytest  # noqa: E402


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_inversion_matches_diffusers_ddim_inverse_scheduler(pipe, prediction_type):
    """Our DDIM inversion is diffusers' DDIMInverseScheduler step for step, for ε- and v-prediction
    (the same UNet read as a v-predictor is enough to check the ε/x0 conversion and its ᾱ)."""
    from diffusers import DDIMScheduler

    config = {**pipe.scheduler.config, "prediction_type": prediction_type}
    scheduler = DDIMScheduler.from_config(config)
    z0 = encode_latents(pipe.vae, to_pixels([render(Scene("large", "blue", "square", "white"), seed=3)], 32))
    cond = encode_prompt(pipe, "a large blue square on a white background")
    ours = ddim_invert(pipe.unet, z0, cond, Schedule(scheduler, 20), 15)
    theirs = _diffusers_inversion(pipe.unet, scheduler.config, z0, cond, 20, 15)
    for level, (a, b) in enumerate(zip(ours, theirs)):
        assert (a - b).norm() / b.norm() < 1e-5, (prediction_type, level, ((a - b).norm() / b.norm()).item())
