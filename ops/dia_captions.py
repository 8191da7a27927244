"""DIA's "synthetic baseline" (Šubrtová et al.): the analogy in caption-feature space,
then img2img on B.

    1. captions of A, A′, B
    2. c = Tsd(capB) + st·(Tsd(capA′) − Tsd(capA))
    3. img2img on B under c (SDEdit's sampler)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ops.cache import Cache
from ops.captions import caption
from ops.ddim import decode_latents, encode_images
from ops.dia import ANALOGY_STRENGTH
from ops.images import to_pil
from ops.sdedit import SDEditConfig, img2img
from ops.text import encode_prompt


@dataclass(frozen=True)
class DIACaptionConfig:
    """The analogy strength of DIA; img2img with SDEdit's defaults."""

    strength: float = ANALOGY_STRENGTH  # st
    img2img_strength: float = SDEditConfig.strength
    num_steps: int = SDEditConfig.num_steps
    guidance_scale: float = SDEditConfig.guidance_scale
    negative_prompt: str = SDEditConfig.negative_prompt

    def img2img(self) -> SDEditConfig:
        return SDEditConfig(self.img2img_strength, self.num_steps, self.guidance_scale, self.negative_prompt)


@torch.no_grad()
def dia_captions(models, a: Image.Image, a_prime: Image.Image, b: Image.Image,
                 config: DIACaptionConfig = DIACaptionConfig(), *, seed: int = 0, cache: Cache | None = None,
                 change_map: torch.Tensor | None = None, instruction: str | None = None) -> Image.Image:
    """B′ from the captions of (A, A′, B): c = Tsd(capB) + st·(Tsd(capA′) − Tsd(capA)) → img2img on B."""
    pipe, cache = models.pipeline, cache or Cache()
    # 1. captions
    cap_a, cap_a_prime, cap_b = (caption(models, image, cache) for image in (a, a_prime, b))
    # 2. text features and the analogy
    c_a, c_a_prime, c_b = (encode_prompt(pipe, text) for text in (cap_a, cap_a_prime, cap_b))
    cond = c_b + config.strength * (c_a_prime - c_a)
    # 3. img2img on B
    img2img_config = config.img2img()
    z0 = encode_images(pipe, [b])
    z = img2img(pipe, z0, cond, encode_prompt(pipe, img2img_config.negative_prompt), img2img_config,
                torch.Generator().manual_seed(seed), change_map)
    return to_pil(decode_latents(pipe.vae, z))[0]
