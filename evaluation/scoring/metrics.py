"""Scores of a generated B′, as long-format rows (one row per metric):

- `<encoder>_direction`: cos(n(f(B′)) − n(f(B)), n(f(A′)) − n(f(A))) for each image
  encoder f (clip; dinov2 in real profiles). B′ = B scores 0.
- `clip_text_direction`: cos(n(f(B′)) − n(f(B)), n(t(after)) − n(t(before))) with the
  CLIP text tower, where the dataset has captions (B's pair, else A's pair).
- `<encoder>_gt_cosine`, `gt_pixel_mse`, `gt_psnr`: similarity to B′gt, where it exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PSNR_CAP_DB = 100.0  # identical images: a finite value keeps means and CIs defined


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def directional(f_a: torch.Tensor, f_a_prime: torch.Tensor, f_b: torch.Tensor, f_b_prime: torch.Tensor) -> torch.Tensor:
    """Row-wise cos(n(f_b′) − n(f_b), n(f_a′) − n(f_a)); 0 where either difference is zero."""
    return F.cosine_similarity(unit(f_b_prime) - unit(f_b), unit(f_a_prime) - unit(f_a), dim=-1)


def cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(x.float(), y.float(), dim=-1)


def pixel_mse_psnr(image: Image.Image, reference: Image.Image) -> tuple[float, float]:
    """MSE of pixels in [0, 1] (image resized to the reference's size) and PSNR in dB."""
    if image.size != reference.size:
        image = image.resize(reference.size, Image.Resampling.BICUBIC)
    x = np.asarray(image.convert("RGB"), dtype=np.float64) / 255
    y = np.asarray(reference.convert("RGB"), dtype=np.float64) / 255
    mse = float(np.mean((x - y) ** 2))
    psnr = PSNR_CAP_DB if mse <= 10 ** (-PSNR_CAP_DB / 10) else 10 * math.log10(1 / mse)
    return mse, psnr


@dataclass
class ScoreItem:
    """One generation to score; images are blob hashes, resolved through `load`."""

    triplet_id: str
    method: str
    config_hash: str
    a: str
    a_prime: str
    b: str
    b_prime: str
    b_prime_gt: str | None = None
    text_before: str | None = None
    text_after: str | None = None


def items_from_tables(triplets: list[dict], generations: list[dict]) -> list[ScoreItem]:
    """One item per successful generation, joined with its triplet. The caption delta is
    B's pair (B → B′gt) where the dataset captions both, else A's pair (A → A′)."""
    by_id = {t["triplet_id"]: t for t in triplets}
    items = []
    for g in generations:
        if g["error"]:
            continue
        t = by_id[g["triplet_id"]]
        before, after = ((t["b_caption"], t["b_prime_caption"]) if t["b_caption"] and t["b_prime_caption"]
                         else (t["a_caption"], t["a_prime_caption"]))
        items.append(ScoreItem(g["triplet_id"], g["method"], g["config_hash"], t["a_hash"], t["a_prime_hash"],
                               t["b_hash"], g["b_prime_hash"], t["b_prime_gt_hash"], before, after))
    return items


class Encoder(Protocol):
    """Anything with `.encode(list[PIL]) -> (N, D)` and `.model_id` (models.loaders encoders)."""

    encode: Callable[[list], torch.Tensor]
    model_id: str


def encode_unique(encoder: Encoder, hashes: set[str], load: Callable[[str], Image.Image],
                  batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Features of each distinct image once (A is shared by many methods and triplets)."""
    order = sorted(hashes)
    features = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        out = encoder.encode([load(h) for h in chunk]).float().cpu()
        features.update(zip(chunk, out, strict=True))
    return features


def score_items(items: list[ScoreItem], load: Callable[[str], Image.Image], image_encoders: dict[str, Encoder],
                text_encoder: Encoder | None = None) -> list[dict]:
    """Metric rows (triplet_id, method, config_hash, metric, value, model_id) for every item."""
    rows: list[dict] = []

    def add(item: ScoreItem, metric: str, value: float, model_id: str | None) -> None:
        rows.append({"triplet_id": item.triplet_id, "method": item.method, "config_hash": item.config_hash,
                     "metric": metric, "value": float(value), "model_id": model_id})

    if not items:
        return rows
    hashes = {h for it in items for h in (it.a, it.a_prime, it.b, it.b_prime, it.b_prime_gt) if h}
    for kind, encoder in image_encoders.items():
        f = encode_unique(encoder, hashes, load)
        stack = lambda role, subset, f=f: torch.stack([f[getattr(it, role)] for it in subset])  # noqa: E731
        scores = directional(stack("a", items), stack("a_prime", items), stack("b", items), stack("b_prime", items))
        for item, value in zip(items, scores.tolist(), strict=True):
            add(item, f"{kind}_direction", value, encoder.model_id)
        with_gt = [it for it in items if it.b_prime_gt]
        if with_gt:
            for item, value in zip(with_gt, cosine(stack("b_prime", with_gt), stack("b_prime_gt", with_gt)).tolist(),
                                   strict=True):
                add(item, f"{kind}_gt_cosine", value, encoder.model_id)
        with_text = [it for it in items if it.text_before and it.text_after]
        if kind == "clip" and text_encoder is not None and with_text:
            before = text_encoder.encode([it.text_before for it in with_text]).float().cpu()
            after = text_encoder.encode([it.text_after for it in with_text]).float().cpu()
            image_delta = unit(stack("b_prime", with_text)) - unit(stack("b", with_text))
            values = F.cosine_similarity(image_delta, unit(after) - unit(before), dim=-1)
            for item, value in zip(with_text, values.tolist(), strict=True):
                add(item, "clip_text_direction", value, text_encoder.model_id)
    for item in items:
        if item.b_prime_gt:
            mse, psnr = pixel_mse_psnr(load(item.b_prime), load(item.b_prime_gt))
            add(item, "gt_pixel_mse", mse, None)
            add(item, "gt_psnr", psnr, None)
    return rows
