"""SDEdit (img2img) on the toy pipeline."""

import torch

from models.toy.world import Scene, render
from ops.ddim import encode_latents
from ops.images import to_pixels
from ops.sdedit import SDEditConfig, img2img, sdedit_image, start_level
from ops.text import encode_prompt

PROMPT = "a large purple triangle on a black background"


def test_start_level_follows_the_img2img_rule():
    assert start_level(50, 1.0) == 0 and start_level(50, 0.0) == 50
    assert start_level(50, 0.75) == 13 and start_level(10, 0.5) == 5


def test_strength_orders_the_amount_of_change(pipe):
    b = render(Scene("small", "orange", "circle", "white"), seed=1)
    z0 = encode_latents(pipe.vae, to_pixels([b], 32))
    # the empty prompt: a far prompt at CFG 7.5 overshoots at low noise on the toy model (a short,
    # low-strength edit then changes more than a long one), which would hide what strength does
    cond = uncond = encode_prompt(pipe, "")

    def change(strength):
        z = img2img(pipe, z0, cond, uncond, SDEditConfig(strength, num_steps=10), torch.Generator().manual_seed(0))
        return (z - z0).pow(2).mean().sqrt().item()

    assert change(0.0) == 0.0  # strength 0 denoises nothing
    changes = [change(s) for s in (0.2, 0.5, 0.8, 1.0)]
    assert changes == sorted(changes) and changes[0] > 0, changes


def test_sdedit_returns_an_image_and_is_seeded(pipe):
    b = render(Scene("small", "orange", "circle", "white"), seed=1)
    config = SDEditConfig(num_steps=10)
    out = sdedit_image(pipe, b, PROMPT, config, seed=0)
    assert out.size == (32, 32) and out.mode == "RGB"
    assert out.tobytes() == sdedit_image(pipe, b, PROMPT, config, seed=0).tobytes()


def test_zero_change_map_keeps_b(pipe):
    """Change-map mode of img2img: a map of zeros keeps B (same bound as Differential Diffusion)."""
    from test_differential_diffusion import keep_tolerance

    b = render(Scene("small", "orange", "circle", "white"), seed=1)
    z0 = encode_latents(pipe.vae, to_pixels([b], 32))
    cond, uncond = encode_prompt(pipe, PROMPT), encode_prompt(pipe, "")
    config = SDEditConfig(1.0, num_steps=10)
    kept = img2img(pipe, z0, cond, uncond, config, torch.Generator().manual_seed(0), torch.zeros(32, 32))
    free = img2img(pipe, z0, cond, uncond, config, torch.Generator().manual_seed(0))
    assert (kept - z0).pow(2).mean().sqrt() < keep_tolerance(pipe, 10) < (free - z0).pow(2).mean().sqrt()
