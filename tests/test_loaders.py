"""Real-profile loaders: a missing model is a clear error; the same code loads
tiny real-format models built from configs (no network, no hub)."""

import dataclasses

import pytest
import torch

from models import loaders
from models.profiles import PROFILES, ClipSource, get_profile


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaders.load_pipeline.cache_clear()
    loaders.load_clip.cache_clear()
    yield
    loaders.load_pipeline.cache_clear()
    loaders.load_clip.cache_clear()


def test_profiles_name_every_model():
    for profile in PROFILES.values():
        assert profile.diffusion and profile.joint_clip and profile.eval_clip and profile.captioner
    assert get_profile("sd21-base").joint_clip.name == "ViT-H-14"
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("sd3")


def test_weights_key_follows_the_weights_not_the_path(tmp_path, empty_hf_cache):
    """A model folder counts by its files' bytes (a copy elsewhere is the same, one changed byte is not); a hub
    model by the snapshot its cache's refs/main names; the judge never enters the key."""
    import shutil

    from models.profiles import TOY_WEIGHTS

    toy = get_profile("toy")
    copy = tmp_path / "sd"
    shutil.copytree(TOY_WEIGHTS / "sd", copy)
    moved = dataclasses.replace(toy, diffusion=str(copy))
    assert loaders.weights_key(moved) == loaders.weights_key(toy)
    assert loaders.weights_key(dataclasses.replace(toy, judge=None)) == loaders.weights_key(toy)
    changed = tmp_path / "changed"
    shutil.copytree(copy, changed)
    weights = next(changed.rglob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert loaders.weights_key(dataclasses.replace(toy, diffusion=str(changed))) != loaders.weights_key(toy)

    real = get_profile("sd15")
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in loaders.weights_key(real)  # not cached: the id alone
    ref = tmp_path / "hf" / "hub" / "models--stable-diffusion-v1-5--stable-diffusion-v1-5" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("abc123\n")
    first = loaders.weights_key(real)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5@abc123" in first
    ref.write_text("def456\n")
    assert loaders.weights_key(real) != first


def test_missing_diffusion_model_names_id_and_fetch_command(empty_hf_cache):
    with pytest.raises(loaders.ModelMissingError) as err:
        loaders.load_pipeline(get_profile("sd21-base"), "cpu")
    assert "stabilityai/stable-diffusion-2-1-base" in str(err.value)
    assert "hf download stabilityai/stable-diffusion-2-1-base" in str(err.value)


def test_missing_open_clip_weights_name_the_hub_repo(empty_hf_cache):
    with pytest.raises(loaders.ModelMissingError) as err:
        loaders.load_clip(get_profile("sd21-base").joint_clip, "cpu")
    assert "hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K" in str(err.value)


def test_missing_dinov2_and_blip2(empty_hf_cache):
    with pytest.raises(loaders.ModelMissingError, match="hf download facebook/dinov2-base"):
        loaders._load_dinov2("facebook/dinov2-base", "cpu")
    with pytest.raises(loaders.ModelMissingError, match="hf download Salesforce/blip2-opt-2.7b"):
        loaders._load_blip2("Salesforce/blip2-opt-2.7b", "cpu")


def test_missing_toy_weights_point_to_the_training_command(tmp_path):
    profile = dataclasses.replace(get_profile("toy"), diffusion=str(tmp_path / "nothing"))
    with pytest.raises(loaders.ModelMissingError, match="python -m models.toy.train"):
        loaders.load_pipeline(profile, "cpu")
    with pytest.raises(loaders.ModelMissingError, match="python -m models.toy.train"):
        loaders.load_clip(ClipSource(f"local-dir:{tmp_path / 'nothing'}"), "cpu")


def test_real_format_v_prediction_pipeline_from_configs_runs_di(tmp_path, pipe, joint_clip):
    """A pipeline saved like SD 2.1-768 (v-prediction) loads through the same loader and
    DIFF training + B′ generation run on it."""
    from diffusers import DDIMScheduler

    from models.toy.world import make_triplets
    from ops.ddim import encode_latents
    from ops.diff_tokens import train_diff_tokens
    from ops.difference_inversion import DIConfig, apply_difference
    from ops.images import to_pixels

    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    try:
        pipe.save_pretrained(tmp_path / "sd-v")
    finally:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="epsilon")
    profile = dataclasses.replace(get_profile("toy"), name="tiny-v", diffusion=str(tmp_path / "sd-v"))
    v_pipe = loaders.load_pipeline(profile, "cpu")
    assert v_pipe.scheduler.config.prediction_type == "v_prediction"
    im = make_triplets(2, 1)[0].images()
    z = encode_latents(v_pipe.vae, to_pixels([im["a"], im["a_prime"]], 32))
    out = train_diff_tokens(v_pipe, joint_clip, z[:1], z[1:], [320], [320], torch.ones(128),
                            DIConfig(steps=3).training, seed=0)
    assert torch.isfinite(out.tokens).all() and len(out.curve["tc"]) == 3
    b_prime = apply_difference(v_pipe, im["b"], [320], out.tokens, DIConfig(num_steps=5, inversion_steps=4))
    assert b_prime.size == (32, 32)


def test_dinov2_loader_on_a_tiny_model_from_config(tmp_path):
    from PIL import Image
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          image_size=56, patch_size=14)
    Dinov2Model(config).save_pretrained(tmp_path / "dino")
    processor = BitImageProcessor(crop_size={"height": 56, "width": 56}, size={"shortest_edge": 56})
    processor.save_pretrained(tmp_path / "dino")
    encoder = loaders._load_dinov2(str(tmp_path / "dino"), "cpu")
    feats = encoder.encode([Image.new("RGB", (40, 30), "red"), Image.new("L", (64, 64), 128)])
    assert feats.shape == (2, 32) and torch.isfinite(feats).all()
