"""Differential Diffusion's reliability score (Levin & Fried Section 4.2.2): does the
amount of change follow a change map?

    m[:, j] = j / w                      horizontal gradient change map (1 = change fully)
    τ_m[i] = mean over images of ‖out[:, i, :] − x[:, i, :]‖₂ / h     per column i
    τ̂ = τ_gradient − τ_all-change         (removes location bias, e.g. a centred object)
    R = Pearson(τ̂, column index)          1 = change grows exactly linearly left → right

Reported beside R: the *proportional ceiling*, R of an ideal editor whose change in each
column is exactly m times the all-change edit's (τ(gradient) = m·τ(all), so τ̂ = (m − 1)·τ(all)).
It depends on the images alone: 1 when τ(all) is flat across columns (the paper's ImageNet
photos, content everywhere), lower when the images carry a location bias that the subtraction
does not remove (one centred object on a plain background: τ(all) is hump-shaped).

The editing function is an argument, so any method with a change-map mode can be
scored: `edit(images, change_map) -> images`, the same prompt for every image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

EditFn = Callable[[list[Image.Image], torch.Tensor], list[Image.Image]]


def gradient_change_map(height: int, width: int) -> torch.Tensor:
    """m[:, j] = j / w: keep the left edge, change more and more toward the right."""
    return (torch.arange(width, dtype=torch.float32) / width).expand(height, width).clone()


def as_array(image) -> np.ndarray:
    """(H, W, C) floats: a PIL image in [0, 1], or an array/tensor (H, W, C) as it is (e.g. latents)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    return np.asarray(image, dtype=np.float64)


def column_trend(inputs: list, outputs: list) -> np.ndarray:
    """τ[i] = mean over images of ‖out[:, i, :] − x[:, i, :]‖₂ / h."""
    total = None
    for x, out in zip(inputs, outputs, strict=True):
        a, b = as_array(x), as_array(out)
        if a.shape != b.shape:
            raise ValueError(f"an edit changed the image's shape: {a.shape} → {b.shape}")
        col = np.sqrt(((b - a) ** 2).sum(axis=(0, 2))) / a.shape[0]  # one norm per column over rows and channels
        total = col if total is None else total + col
    return total / len(inputs)


def pearson(values: np.ndarray, columns: np.ndarray) -> float | None:
    """Pearson correlation, rounded; None where `values` do not vary (e.g. an editor that never
    changes anything), where it is undefined."""
    if np.ptp(values) == 0:
        return None
    return round(float(np.corrcoef(values, columns)[0, 1]), 4)


def reliability_score(edit_fn: EditFn, images: list, map_size: tuple[int, int] | None = None) -> dict:
    """R for `edit_fn` on `images` (all the same size): {"reliability", "n", "tau_hat", …}.

    `images` are PIL images (the paper) or (H, W, C) arrays, e.g. latents, with `map_size` the
    (height, width) of the change map the editor takes when it differs from the arrays' size."""
    if len(images) < 2:
        raise ValueError("the reliability score needs a set of images (the paper uses 5,000; we require ≥ 2)")
    shapes = {as_array(im).shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"all images must have the same size (the map is positional), got {sorted(shapes)}")
    h, w = map_size or next(iter(shapes))[:2]
    # 1. edit with the gradient map and with the all-change map (same prompt, same seeds)
    tau_gradient = column_trend(images, edit_fn(images, gradient_change_map(h, w)))
    tau_all = column_trend(images, edit_fn(images, torch.ones(h, w)))
    # 2. normalised trend and its correlation with the column index
    tau_hat = tau_gradient - tau_all
    columns = np.arange(len(tau_hat))
    m = torch.nn.functional.adaptive_avg_pool1d(gradient_change_map(1, w)[None], len(tau_hat))[0, 0].numpy()
    return {"reliability": pearson(tau_hat, columns), "proportional_ceiling": pearson((m - 1) * tau_all, columns),
            "n": len(images), "map_width": w, "map_height": h,
            "tau_hat": tau_hat.round(5).tolist(), "tau_gradient": tau_gradient.round(5).tolist(),
            "tau_all": tau_all.round(5).tolist()}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def folder_images(folder, n: int, size: int, seed: int = 0) -> tuple[list[Image.Image], list[dict]]:
    """Up to `n` images of a folder of photos (the paper: 5,000 ImageNet validation pictures),
    a seeded sample of its image files when it holds more, each resized to size×size (the
    paper resizes to 512×512 so that columns line up). A file that does not load is skipped,
    with its reason, in the second list: [{"file", "error"}]."""
    import random
    from pathlib import Path

    from evaluation.ingestion.images import ImageError, load_image

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) > n:
        files = sorted(random.Random(f"reliability:{seed}").sample(files, n))
    images, skipped = [], []
    for path in files:
        try:
            image = load_image(path).image
        except (ImageError, OSError) as exc:
            skipped.append({"file": path.name, "error": str(exc)})
            continue
        images.append(image.resize((size, size), Image.Resampling.BICUBIC))
    return images, skipped


def toy_images(n: int, seed: int = 0, textured: bool = False) -> list[Image.Image]:
    """`n` seeded toy renders (scenes the method-side models were trained on) to score on; with
    `textured`, the textured world's renders of the same scenes (for the `toy-textured` models)."""
    import random

    from models.toy.world import render, render_textured, training_scenes

    draw = render_textured if textured else render
    rng = random.Random(f"reliability:{seed}")
    scenes = training_scenes()
    return [draw(rng.choice(scenes), rng.randrange(2**31)) for _ in range(n)]
