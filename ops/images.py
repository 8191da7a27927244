"""PIL ↔ tensor conversion for the diffusion models (pixels in [−1, 1])."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_pixels(images: list[Image.Image], size: int) -> torch.Tensor:
    """RGB images resized to size×size → (B, 3, size, size) in [−1, 1]."""
    arrays = []
    for im in images:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(im, dtype=np.float32) / 127.5 - 1)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [−1, 1] → RGB images."""
    arrays = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, mode="RGB") for a in arrays]
