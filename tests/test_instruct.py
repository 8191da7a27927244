"""The instruction-editing family: the editor loader, InstructPix2Pix's three-way-guided sampler against
diffusers' own pipeline, and VISII's instruction training — on the committed toy editor and on tiny
real-format editors built from configs."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from makers import write_tiny_editor

from models import loaders
from models.context import ModelContext
from models.profiles import PROFILES, get_profile
from models.toy.world import make_triplets
from ops.instructpix2pix import IP2PConfig, edit_latents
from ops.registry import get_method, resolve_specs, run_method
from ops.text import encode_prompt
from ops.visii import VISIIConfig, train_instruction


@pytest.fixture(scope="module")
def triplet():
    return make_triplets(5, 4)[1]  # a colour change


@pytest.fixture(scope="module")
def editor():
    return loaders.load_editor(get_profile("toy"), "cpu")


@pytest.fixture(scope="module")
def tiny_profiles(tmp_path_factory, pipe):
    """Profiles whose editor is a tiny random 8-channel model (Euler ancestral, and DDIM)."""
    profiles = {}
    for scheduler in ("euler_ancestral", "ddim"):
        folder = write_tiny_editor(tmp_path_factory.mktemp(f"tiny-editor-{scheduler}"), pipe, scheduler)
        profiles[scheduler] = dataclasses.replace(get_profile("toy"), name=f"tiny-editor-{scheduler}",
                                                  editor=str(folder))
    return profiles


def test_the_toy_editor_is_an_instruct_pix2pix_pipeline(editor):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    assert isinstance(editor, StableDiffusionInstructPix2PixPipeline)
    assert editor.unet.config.in_channels == 8 and editor.unet.config.out_channels == 4
    assert isinstance(editor.scheduler, EulerAncestralDiscreteScheduler)
    assert not any(p.requires_grad for p in editor.unet.parameters())


def _ours_and_diffusers(pipe, image, text, steps, seed=3, guidance=7.5, image_guidance=1.5):
    cond, uncond = encode_prompt(pipe, text), encode_prompt(pipe, "")
    ours = edit_latents(pipe, image, cond, uncond, num_steps=steps, guidance_scale=guidance,
                        image_guidance_scale=image_guidance, generator=torch.Generator().manual_seed(seed))
    theirs = pipe(text, image=image, num_inference_steps=steps, guidance_scale=guidance,
                  image_guidance_scale=image_guidance, generator=torch.Generator().manual_seed(seed),
                  output_type="latent").images
    return ours, theirs


def test_our_sampler_is_diffusers_instruct_pix2pix_pipeline(editor, triplet):
    """Same seed, same scheduler: the same latents. The only difference in the arithmetic is the pixel
    normalisation (x/127.5 − 1 here, 2·(x/255) − 1 in diffusers' image processor), one float rounding of
    the input, so the latents agree to 1e-4 (they differ by ~1e-1 between two seeds)."""
    b = triplet.images()["b"]
    ours, theirs = _ours_and_diffusers(editor, b, triplet.instruction, steps=20)
    assert (ours - theirs).abs().max() < 1e-4
    other, _ = _ours_and_diffusers(editor, b, triplet.instruction, steps=20, seed=4)
    assert (ours - other).abs().max() > 1e-2
    # guidance off (s_T = 1): the text+image branch alone, as diffusers does
    ours, theirs = _ours_and_diffusers(editor, b, triplet.instruction, steps=5, guidance=1.0)
    assert (ours - theirs).abs().max() < 1e-4


@pytest.mark.parametrize("scheduler", ["euler_ancestral", "ddim"])
def test_our_sampler_matches_diffusers_on_a_tiny_real_format_editor(tiny_profiles, scheduler, triplet):
    pipe = loaders.load_editor(tiny_profiles[scheduler], "cpu")
    ours, theirs = _ours_and_diffusers(pipe, triplet.images()["b"], "make it red", steps=8)
    assert (ours - theirs).abs().max() < 1e-4


def test_a_change_map_of_zeros_keeps_b(editor, triplet):
    """Keep everywhere: B is re-injected at every level, so B′ is B's VAE round trip; change everywhere is
    the plain edit."""
    import numpy as np

    from ops.ddim import vae_round_trip
    from ops.instructpix2pix import edit_image

    b = triplet.images()["b"]
    config = IP2PConfig(num_steps=20)
    kept = np.asarray(edit_image(editor, b, triplet.instruction, config, change_map=torch.zeros(32, 32)), float)
    edited = np.asarray(edit_image(editor, b, triplet.instruction, config), float)
    same = np.asarray(edit_image(editor, b, triplet.instruction, config, change_map=torch.ones(32, 32)), float)
    round_trip = np.asarray(vae_round_trip(editor, [b])[0], float)
    assert np.abs(kept - round_trip).mean() < 4
    assert np.abs(edited - round_trip).mean() > 3 * np.abs(kept - round_trip).mean()
    assert np.array_equal(same, edited)  # re-injection draws no noise of its own


def test_visii_learns_only_the_prompt_rows_and_its_loss_falls(editor, joint_clip, triplet):
    images = triplet.images()
    a, a_prime = images["a"], images["a_prime"]
    init_text = "a small blue square"
    config = VISIIConfig(steps=150)
    learned = train_instruction(editor, joint_clip, a, a_prime, init_text, config, seed=0)
    ids = editor.tokenizer(init_text, padding="max_length", max_length=editor.tokenizer.model_max_length,
                           return_tensors="pt").input_ids
    eot = int((ids[0] == editor.tokenizer.eos_token_id).nonzero()[0])
    init = editor.text_encoder(input_ids=ids).last_hidden_state
    for rows in (learned.best, learned.last):
        assert torch.equal(rows[:, 0], init[:, 0])  # SOT
        assert torch.equal(rows[:, eot:], init[:, eot:])  # EOT onward
        assert not torch.allclose(rows[:, 1:eot], init[:, 1:eot])
    assert torch.equal(learned.uncond, encode_prompt(editor, ""))
    assert learned.mse[learned.best_step] == min(learned.mse)
    # the guided MSE on fixed (timestep, noise) draws falls from the init to the learned rows
    from ops.instructpix2pix import guided_noise, image_condition

    g = torch.Generator().manual_seed(1)
    cond_image = image_condition(editor, [a])
    target = image_condition(editor, [a_prime]) * editor.vae.config.scaling_factor
    alphas = editor.scheduler.alphas_cumprod

    def mse(states):
        total = 0.0
        for t in range(50, 1000, 50):
            noise = torch.randn(target.shape, generator=g)
            z = alphas[t].sqrt() * target + (1 - alphas[t]).sqrt() * noise
            eps = guided_noise(editor.unet, z, torch.tensor([t]), states, learned.uncond, cond_image, 7.5, 1.5)
            total += F.mse_loss(eps, noise).item()
        return total

    with torch.no_grad():
        g.manual_seed(1)
        before = mse(init)
        g.manual_seed(1)
        after = mse(learned.last)
    assert after < before


def test_visii_and_instructpix2pix_run_end_to_end_on_a_tiny_real_format_editor(tiny_profiles, monkeypatch, triplet):
    profile = tiny_profiles["euler_ancestral"]
    monkeypatch.setitem(PROFILES, profile.name, profile)
    models = ModelContext(profile.name, "cpu")
    images = triplet.images()
    for spec in ("instructpix2pix[num_steps=4]", "instructpix2pix[num_steps=4;text=empty]",
                 "visii[steps=5;pez_steps=5;num_steps=4]"):
        (run,) = resolve_specs([spec], profile)
        out = run_method(run, models, images["a"], images["a_prime"], images["b"], seed=1,
                         instruction=triplet.instruction)
        assert out.size == images["b"].size and out.mode == "RGB"


def test_bad_settings_fail_before_any_work():
    with pytest.raises(ValueError, match="text must be one of"):
        get_method("instructpix2pix").config({"text": "instructions"})
    with pytest.raises(ValueError, match="keep must be one of"):
        get_method("visii").config({"keep": "first"})
    from importlib.util import find_spec

    if find_spec("bitsandbytes") is None:
        with pytest.raises(ValueError, match="needs bitsandbytes"):
            get_method("visii").config({"optimizer": "adamw8bit"})
    with pytest.raises(ValueError, match="steps must be in 1..1000"):
        get_method("visii").config({"steps": 5000})


def test_a_missing_editor_names_the_model_and_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    loaders.load_editor.cache_clear()
    with pytest.raises(loaders.ModelMissingError, match="hf download timbrooks/instruct-pix2pix"):
        loaders.load_editor(get_profile("sd15"), "cpu")
    with pytest.raises(ValueError, match="no instruction editor"):
        loaders.load_editor(get_profile("sdxl"), "cpu")
    toy = dataclasses.replace(get_profile("toy"), editor=str(tmp_path / "nothing"))
    with pytest.raises(loaders.ModelMissingError, match="python -m models.toy.train"):
        loaders.load_editor(toy, "cpu")
    loaders.load_editor.cache_clear()


def test_visii_instructions_trained_together_are_each_the_one_trained_alone(tiny_profiles, joint_clip):
    from ops.visii import train_instructions

    pipe = loaders.load_editor(tiny_profiles["euler_ancestral"], "cpu")
    t1, t2 = make_triplets(6, 2)
    pairs = [(t.images()["a"], t.images()["a_prime"], text, seed)
             for t, text, seed in ((t1, "a small red circle", 1), (t2, "a large star on a grey background", 2))]
    config = VISIIConfig(steps=15)
    together = train_instructions(pipe, joint_clip, pairs, config)
    for pair, learned in zip(pairs, together):
        (alone,) = train_instructions(pipe, joint_clip, [pair], config)
        assert torch.allclose(learned.last, alone.last, atol=1e-5)
        assert learned.best_step == alone.best_step


def test_visii_init_tokens_added_keeps_only_what_a_prime_prompt_adds(joint_clip):
    """init_tokens='added': the init is PEZ(A′) without the tokens of a PEZ prompt of A (seeded by A and the
    pair's seed), from one PEZ batch; 'all' (the official) is PEZ(A′) itself."""
    from ops.cache import content_seed
    from ops.pez import pez_prompts
    from ops.visii import init_texts

    pairs = [(im["a"], im["a_prime"]) for im in (t.images() for t in make_triplets(7, 2))]
    config = VISIIConfig(pez_steps=30, init_tokens="added")
    seeds = [11, 12]
    got = init_texts(joint_clip, pairs, config, seeds)
    found = pez_prompts(joint_clip, [[ap] for _, ap in pairs] + [[a] for a, _ in pairs], n_tokens=10, steps=30,
                        seeds=seeds + [content_seed(s, a) for s, (a, _) in zip(seeds, pairs)])
    for text, after, before in zip(got, found[:2], found[2:]):
        added = [i for i in after.token_ids if i not in set(before.token_ids)]
        assert text == joint_clip.tokenizer.decode(added).strip()
        assert len(added) < len(after.token_ids)  # A and A′ share most of what PEZ reads off them
    alone = pez_prompts(joint_clip, [[ap] for _, ap in pairs], n_tokens=10, steps=30, seeds=seeds)
    assert init_texts(joint_clip, pairs, VISIIConfig(pez_steps=30), seeds) == [p.text for p in alone]
    assert VISIIConfig().training_hash() != config.training_hash()
    with pytest.raises(ValueError, match="init_tokens must be one of"):
        get_method("visii").config({"init_tokens": "some"})
