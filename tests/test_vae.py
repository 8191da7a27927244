"""`encode_latents`/`decode_latents` on both kinds of VAE SD pipelines carry: AutoencoderKL
(SD's own) and AutoencoderTiny (TAESD; the toy's experimental local VAE)."""

import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny

from models.toy import architecture as arch
from models.toy.world import Scene, render
from ops.ddim import decode_latents, encode_latents
from ops.images import to_pixels

SCENES = [Scene("large", "blue", "square", "white"), Scene("small", "orange", "circle", "black"),
          Scene("large", "green", "star", "grey"), Scene("small", "red", "cross", "white")]


@pytest.fixture(scope="module")
def images():
    return to_pixels([render(s, seed=i) for i, s in enumerate(SCENES)], 32)


@pytest.mark.parametrize("vae_class, config",
                         [(AutoencoderKL, arch.vae_config()), (AutoencoderTiny, arch.tiny_vae_config())])
def test_encode_is_deterministic_scaled_and_decodes_to_pixels(vae_class, config, images):
    torch.manual_seed(0)
    vae = vae_class(**config).eval()
    vae.register_to_config(scaling_factor=0.5)
    z = encode_latents(vae, images)
    assert z.shape == (4, 4, 8, 8)
    assert torch.equal(z, encode_latents(vae, images))  # the mean (KL) or the encoder's output: no sampling
    raw = vae.encode(images)
    unscaled = raw.latent_dist.mean if vae_class is AutoencoderKL else raw.latents
    assert torch.allclose(z, unscaled * 0.5)
    x = decode_latents(vae, z)
    assert x.shape == images.shape and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x, vae.decode(z / 0.5).sample.clamp(-1, 1))
