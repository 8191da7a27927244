"""Difference Inversion on SDXL: two text encoders, two token tables, pooled text and time ids.

The pipeline is a tiny `StableDiffusionXLPipeline` built from configs and saved, loaded by the
loader that loads `stabilityai/stable-diffusion-xl-base-1.0`: its first text encoder a random
`CLIPTextModel` (CLIP ViT-L's place), its second the toy joint CLIP's whole text tower with its
projection (OpenCLIP ViT-bigG-14's place: the joint CLIP shares its table, as SDXL's does), a
UNet with SDXL's `text_time` added conditioning, the toy VAE. No download."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.profiles import PROFILES, get_profile
from models.toy import architecture as arch

XL_STEPS = 3


@pytest.fixture(scope="module")
def xl_profile(tmp_path_factory, pipe, joint_clip):
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from models.convert import open_clip_text_to_hf
    from models.toy import bpe

    folder = tmp_path_factory.mktemp("tiny-xl")
    torch.manual_seed(0)
    text_encoder_2 = open_clip_text_to_hf(joint_clip.model, drop_last_layers=0, with_projection=True)
    config_2 = text_encoder_2.config
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=config_2.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=config_2.max_position_embeddings,
        bos_token_id=config_2.bos_token_id, eos_token_id=config_2.eos_token_id, pad_token_id=config_2.eos_token_id))
    bpe.write_tokenizer_files(folder / "tok")
    # as SDXL's: the first tokenizer pads with EOT, the second with "!"
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tok", pad_token="<|endoftext|>",
                                              model_max_length=arch.CONTEXT_LENGTH)
    tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tok", pad_token="!", model_max_length=arch.CONTEXT_LENGTH)
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=arch.IMAGE_SIZE // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        cross_attention_dim=32 + config_2.hidden_size, addition_embed_type="text_time",
        addition_time_embed_dim=time_dim, projection_class_embeddings_input_dim=config_2.projection_dim + 6 * time_dim,
        norm_num_groups=16)
    StableDiffusionXLPipeline(
        vae=pipe.vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=DDIMScheduler(**arch.scheduler_config()),
        force_zeros_for_empty_prompt=True).save_pretrained(folder / "pipe")
    return dataclasses.replace(get_profile("toy"), name="tiny-xl", diffusion=str(folder / "pipe"),
                               pipeline_class="StableDiffusionXLPipeline")


@pytest.fixture(scope="module")
def xl_pipe(xl_profile):
    from models.loaders import load_pipeline

    return load_pipeline(xl_profile, "cpu")


@pytest.fixture
def xl_models(xl_profile, monkeypatch):
    from models.context import ModelContext

    monkeypatch.setitem(PROFILES, xl_profile.name, xl_profile)
    return ModelContext(xl_profile.name, "cpu")


def test_conditioning_is_the_sdxl_pipelines_own(xl_pipe):
    """DiffusionText on ids gives exactly what StableDiffusionXLPipeline.encode_prompt gives (both
    encoders' penultimate states side by side, the second's pooled projection), the pipeline's
    time ids, and zeros for "" (force_zeros_for_empty_prompt); the packed UNet call equals the
    UNet called with added_cond_kwargs."""
    from ops.text import DiffusionText

    text, prompt = DiffusionText(xl_pipe), "a small red circle on a white background"
    cond, uncond = text.prompt(prompt), text.unconditional()
    embeds, negative, pooled, negative_pooled = xl_pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                                                      do_classifier_free_guidance=True)
    length, pooled_dim = embeds.shape[1], pooled.shape[1]
    assert cond.shape == (1, length + 1, 32 + 128)  # 128 + 6 numbers packed into one extra row
    torch.testing.assert_close(cond[:, :length], embeds, rtol=0, atol=1e-6)
    torch.testing.assert_close(cond[:, length, :pooled_dim], pooled, rtol=0, atol=1e-6)
    size = arch.IMAGE_SIZE
    time_ids = xl_pipe._get_add_time_ids((size, size), (0, 0), (size, size), dtype=embeds.dtype,
                                         text_encoder_projection_dim=pooled_dim)
    assert torch.equal(cond[:, length, pooled_dim:pooled_dim + 6], time_ids)
    assert torch.equal(uncond[:, :length], negative) and torch.equal(uncond[:, length, :pooled_dim], negative_pooled)
    assert torch.equal(uncond[:, length, pooled_dim:pooled_dim + 6], time_ids)

    z, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor(500)
    packed = text.unet(z, t, torch.cat([uncond, cond])).sample
    direct = xl_pipe.unet(z, t, encoder_hidden_states=torch.cat([negative, embeds]),
                          added_cond_kwargs={"text_embeds": torch.cat([negative_pooled, pooled]),
                                             "time_ids": time_ids.repeat(2, 1)}).sample
    torch.testing.assert_close(packed, direct, rtol=0, atol=1e-6)


def test_free_rows_reach_each_encoder_in_its_own_columns(xl_pipe):
    """A free row is (D₁ | D₂): encoder 1 reads the first columns, encoder 2 the last. Rows equal to
    token ids' rows give the conditioning of those ids."""
    from ops.text import DiffusionText

    text = DiffusionText(xl_pipe)
    assert text.width == 32 + 128 and text.clip_columns == slice(32, 160)
    ids = torch.tensor(xl_pipe.tokenizer("a large blue star", add_special_tokens=False).input_ids)
    by_ids, by_rows = text.encode([[ids]]), text.encode([[text.rows(ids)]])
    torch.testing.assert_close(by_rows, by_ids, rtol=0, atol=1e-5)
    rows = text.rows(ids).clone()
    rows[:, :32] = 0  # only the first encoder's columns change …
    changed = text.encode([[rows]])
    assert not torch.allclose(changed[:, :, :32], by_ids[:, :, :32])
    torch.testing.assert_close(changed[:, :, 32:], by_ids[:, :, 32:], rtol=0, atol=1e-5)  # … and only its states


def test_difference_inversion_end_to_end_on_sdxl(xl_models):
    """The NotImplementedError is gone: D̃ carries rows for both token tables and B′ is produced;
    the CLIP loss reaches only the joint CLIP's (second) columns."""
    from models.toy.world import make_triplets
    from ops.cache import Cache
    from ops.difference_inversion import DIConfig, difference_inversion, prepare_diff_tokens, prompt

    im = make_triplets(5, 1)[0].images()
    config = DIConfig(steps=XL_STEPS, prompt_source="caption", num_steps=4, inversion_steps=3)
    cache = Cache()
    (trained,) = prepare_diff_tokens(xl_models, [(im["a"], im["a_prime"])], config, seed=1, cache=cache, batch_size=1)
    tokens = trained.tokens
    assert tokens.shape == (5, 160) and torch.isfinite(tokens).all() and len(trained.curve["tc"]) == XL_STEPS
    b_prime = difference_inversion(xl_models, im["a"], im["a_prime"], im["b"], config, seed=1, cache=cache)
    assert b_prime.size == (arch.IMAGE_SIZE, arch.IMAGE_SIZE) and b_prime.mode == "RGB"
    assert cache.reused["diff_tokens"] == 1  # the method found the D̃ trained above
    assert tokens[:, :32].abs().sum() > 0 and tokens[:, 32:].abs().sum() > 0  # both tables carry D̃
    assert prompt(xl_models, im["b"], config, 1, cache).text  # B's caption, the same ids in both tokenizers


@pytest.mark.parametrize("ablation", ["di_no_token_consistency", "di_random_init", "di_remove_negation",
                                      "di_image_delta"])
def test_ablation_switches_apply_on_sdxl(xl_models, ablation):
    from models.toy.world import make_triplets
    from ops.cache import Cache
    from ops.difference_inversion import prepare_diff_tokens
    from ops.registry import get_method

    config = get_method(ablation).config({"steps": XL_STEPS}, xl_models.profile)
    triplets = make_triplets(6, 2)
    pairs = [(t.images()["a"], t.images()["a_prime"]) for t in triplets]
    out = prepare_diff_tokens(xl_models, pairs, config, seed=0, cache=Cache(), batch_size=2)
    for d in out:
        assert not isinstance(d, Exception), d
        assert d.tokens.shape == (5, 160)
    if ablation == "di_no_token_consistency":
        # only the CLIP loss trains D̃, and it reads the second table's columns: the first stay zero
        assert all(torch.equal(d.tokens[:, :32], torch.zeros(5, 32)) for d in out)
        assert all(d.tokens[:, 32:].abs().sum() > 0 for d in out)
    if ablation == "di_random_init":
        assert all(d.tokens[:, :32].abs().sum() > 0 for d in out)
