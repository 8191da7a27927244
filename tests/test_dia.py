"""Diffusion Image Analogies on the toy pipeline: each estimation step does its job and
the analogy algebra is wired as the paper says."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from models.context import ModelContext
from models.toy.world import Scene, make_triplets, render
from ops.cache import Cache
from ops.captions import caption_key
from ops.ddim import Schedule, encode_latents
from ops.dia import (
    DIAConfig,
    analogy_latents,
    conditioning_loss,
    denoise,
    dia_sequence,
    estimate_conditioning,
    estimate_noise,
    views,
)
from ops.dia_captions import DIACaptionConfig, dia_captions
from ops.images import to_pixels
from ops.sdedit import SDEditConfig, sdedit_image
from ops.text import pipeline_specials

# Few optimisation steps: enough to see each loss fall on the toy models in a few seconds.
FAST = DIAConfig(cond_steps=40, lbfgs_iterations=3, lbfgs_max_iter=5)


@pytest.fixture(scope="module")
def b_image():
    return render(Scene("large", "blue", "square", "white"), seed=4)


@pytest.fixture(scope="module")
def cond_b(pipe, b_image):
    return estimate_conditioning(pipe, b_image, FAST, seed=0)


@pytest.fixture(scope="module")
def noise_b(pipe, b_image, cond_b):
    return estimate_noise(pipe, b_image, cond_b.cond, FAST, seed=1)


def test_views_are_original_flip_and_crops(b_image):
    v = views(b_image, 32, 6, (0.85, 0.99), torch.Generator().manual_seed(0))
    assert v.shape == (8, 3, 32, 32)
    assert torch.equal(v[0], to_pixels([b_image], 32)[0]) and torch.equal(v[1], v[0].flip(-1))
    assert all(not torch.equal(v[i], v[0]) for i in range(2, 8))  # crops of < 99 % area differ


def test_sequence_is_sot_tokens_then_eot(pipe):
    table = pipe.text_encoder.get_input_embeddings().weight
    sp = pipeline_specials(pipe)
    tokens = torch.randn(10, table.shape[1])
    embeds, ids = dia_sequence(table, tokens, sp)
    assert embeds.shape == (sp.length, table.shape[1]) and ids[0] == sp.sot and (ids[11:] == sp.eot).all()
    assert torch.equal(embeds[1:11], tokens) and torch.equal(embeds[11:], table[sp.eot].expand(sp.length - 11, -1))


def test_conditioning_estimation_lowers_its_loss(pipe, cond_b):
    assert cond_b.cond.shape[0] == 1 and cond_b.tokens.shape[0] == 10
    # the training noise is fresh every step: compare before/after on one fixed set of draws
    g = torch.Generator().manual_seed(123)
    z, t = cond_b.latents, cond_b.timesteps
    draws = [torch.randn(z.shape, generator=g) for _ in range(4)]
    with torch.no_grad():
        before = sum(conditioning_loss(pipe, cond_b.init, z, t, n).item() for n in draws)
        after = sum(conditioning_loss(pipe, cond_b.tokens, z, t, n).item() for n in draws)
    assert after < before, (before, after)


def test_noise_estimation_lowers_the_reconstruction_loss(noise_b):
    curve = noise_b.curve
    assert curve[-1] < 0.5 * curve[0], curve


def test_st_zero_at_cfg_one_is_the_fitted_reconstruction(pipe, b_image, cond_b, noise_b):
    # At st = 0 and CFG 1 the analogy sampler is exactly the function L-BFGS minimised, so
    # its latent error is bounded by the final (latent + pixel) loss — a wiring check of
    # schedule, start level and conditioning that fails if any of them differs.
    z_b = encode_latents(pipe.vae, to_pixels([b_image], 32))
    config = replace(FAST, strength=0.0, guidance_scale=1.0)
    c = cond_b.cond
    z = analogy_latents(pipe, noise_b.noise, c + 1.0, c - 1.0, c, config)  # cA, cA′ are ignored at st = 0
    assert F.mse_loss(z, z_b).item() <= noise_b.curve[-1] + 1e-5
    with torch.no_grad():
        same = denoise(pipe.unet, noise_b.noise, c, Schedule(pipe.scheduler, config.num_steps))
    assert torch.allclose(z, same, atol=1e-5)


def test_st_zero_reproduces_the_fit_at_a_matched_guidance(pipe, b_image, cond_b):
    # With εB fitted through the CFG-3 sampler (the `noise_guidance_scale` switch), st = 0 at sc = 3
    # is that sampler: its error is bounded by the fit's final loss; at sc = 1 it is not the fitted
    # function, and it lands further from B.
    fit = replace(FAST, noise_guidance_scale=3.0)
    noise = estimate_noise(pipe, b_image, cond_b.cond, fit, seed=1)
    assert noise.curve[-1] < 0.5 * noise.curve[0], noise.curve
    z_b = encode_latents(pipe.vae, to_pixels([b_image], 32))
    c = cond_b.cond
    matched = analogy_latents(pipe, noise.noise, c, c, c, replace(fit, strength=0.0, guidance_scale=3.0))
    unmatched = analogy_latents(pipe, noise.noise, c, c, c, replace(fit, strength=0.0, guidance_scale=1.0))
    assert F.mse_loss(matched, z_b).item() <= noise.curve[-1] + 1e-5
    assert F.mse_loss(unmatched, z_b).item() > F.mse_loss(matched, z_b).item()


def test_analogy_strength_moves_the_output(pipe, cond_b, noise_b):
    c = cond_b.cond
    shift = torch.randn(c.shape, generator=torch.Generator().manual_seed(0))
    outs = [analogy_latents(pipe, noise_b.noise, c, c + shift, c, replace(FAST, strength=st)) for st in (0.0, 0.5, 1.5)]
    d = [(o - outs[0]).pow(2).mean().item() for o in outs]
    assert d[0] == 0 and 0 < d[1] < d[2], d


def test_caption_baseline_at_st_zero_is_sdedit_with_b_caption(pipe):
    t = make_triplets(0, 1)[0]
    im = t.images()
    caps = ("a small red circle on a white background", "a small red star on a white background",
            "a large blue square on a black background")
    models, cache = ModelContext(device="cpu"), Cache()
    for role, text in zip(("a", "a_prime", "b"), caps):  # the captions, as if the captioner had given them
        cache("caption", caption_key(models, im[role]), lambda text=text: text)
    run = lambda st: dia_captions(models, im["a"], im["a_prime"], im["b"],  # noqa: E731
                                  DIACaptionConfig(strength=st, num_steps=10), seed=2, cache=cache)
    out = run(0.0)
    assert out.tobytes() == sdedit_image(pipe, im["b"], caps[2], SDEditConfig(num_steps=10), seed=2).tobytes()
    assert run(1.0).tobytes() != out.tobytes()
    assert cache.computed["caption"] == 3 and cache.reused["caption"] == 6  # no caption was recomputed


def test_official_timesteps_are_the_eight_cleanest_of_the_ascending_schedule(pipe, b_image, cond_b):
    ascending = Schedule(pipe.scheduler, FAST.num_steps).timesteps.flip(0)
    assert sorted(cond_b.timesteps.tolist()) == ascending[:8].tolist()  # one each, never the two noisiest
    wave1 = estimate_conditioning(pipe, b_image, replace(FAST, cond_steps=1, cond_timesteps="all"), seed=5)
    assert len(set(wave1.timesteps.tolist())) == 8 and set(wave1.timesteps.tolist()) <= set(ascending.tolist())


def test_both_optimisers_stop_early_below_the_sufficient_loss(pipe, b_image, cond_b):
    """The official stop: the loss is checked before each step, and once it is below the threshold
    nothing more is optimised."""
    stop_now = replace(FAST, early_stop_loss=1e9)
    cond = estimate_conditioning(pipe, b_image, stop_now, seed=0)
    assert len(cond.curve) == 1 and torch.equal(cond.tokens, cond.init)
    noise = estimate_noise(pipe, b_image, cond_b.cond, stop_now, seed=1)
    assert len(noise.curve) == 1
    never = replace(FAST, early_stop_loss=0.0, cond_steps=7, lbfgs_iterations=2)
    assert len(estimate_conditioning(pipe, b_image, never, seed=0).curve) == 7
    assert len(estimate_noise(pipe, b_image, cond_b.cond, never, seed=1).curve) == 3  # 2 iterations + the final
    assert DIAConfig().cond_steps == 10 and DIAConfig().early_stop_loss == 0.0008  # the official values


def test_zero_change_map_keeps_b_s_reconstruction(pipe, cond_b, noise_b):
    """Change-map mode: kept pixels follow B's own reconstruction trajectory (εB under cB, CFG 1),
    so a map of zeros gives that reconstruction up to the last step (the DD bound, M steps)."""
    from test_differential_diffusion import keep_tolerance

    c = cond_b.cond
    shift = torch.randn(c.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rebuilt = denoise(pipe.unet, noise_b.noise, c, Schedule(pipe.scheduler, FAST.num_steps))
    kept = analogy_latents(pipe, noise_b.noise, c, c + shift, c, replace(FAST, strength=1.0), torch.zeros(32, 32))
    assert (kept - rebuilt).pow(2).mean().sqrt() < keep_tolerance(pipe, FAST.num_steps)
