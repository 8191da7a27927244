"""Directional and ground-truth scores on hand-made features."""

import pytest
import torch
from makers import gradient
from PIL import Image

from evaluation.scoring.metrics import ScoreItem, directional, pixel_mse_psnr, score_items


def test_directional_score():
    a, a_prime = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 1.0]])
    same_direction = b + (a_prime - a) * 0.5
    assert directional(a, a_prime, b, same_direction).item() > 0.5
    assert directional(a, a_prime, b, b - (a_prime - a)).item() < -0.5
    assert directional(a, a_prime, b, b).item() == 0.0  # B′ = B: no change, score 0
    assert directional(a, a_prime, b, 7 * b).item() == 0.0  # scale-invariant: features are normalised first


def test_psnr():
    image = gradient()
    assert pixel_mse_psnr(image, image) == (0.0, 100.0)
    black, white = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), (255, 255, 255))
    assert pixel_mse_psnr(black, white) == (1.0, 0.0)


class ColourMean:
    """A stand-in image encoder for the score arithmetic: mean RGB."""

    model_id = "colour-mean"

    def encode(self, images):
        return torch.stack([torch.tensor(im.resize((4, 4)).getdata(), dtype=torch.float32).mean(0) for im in images])


class Words:
    """A stand-in text encoder in ColourMean's space: the colour a caption names."""

    model_id = "words"

    def encode(self, texts):
        return torch.stack([torch.tensor((200.0, 20.0, 20.0) if "red" in t else (20.0, 20.0, 200.0)) for t in texts])


def test_score_items_rows():
    colours = {"red": (200, 20, 20), "blue": (20, 20, 200), "grey": (100, 100, 100), "navy": (20, 20, 120)}
    images = {k: Image.new("RGB", (8, 8), v) for k, v in colours.items()}
    item = ScoreItem("t1", "m", "h", a="red", a_prime="blue", b="grey", b_prime="navy", b_prime_gt="navy",
                     text_before="a red thing", text_after="a blue thing")
    rows = score_items([item], images.__getitem__, {"clip": ColourMean()}, Words())
    by_metric = {r["metric"]: r["value"] for r in rows}
    assert set(by_metric) == {"clip_direction", "clip_gt_cosine", "clip_text_direction", "gt_pixel_mse", "gt_psnr"}
    assert by_metric["clip_direction"] > 0.5 and by_metric["clip_text_direction"] > 0.5
    assert by_metric["clip_gt_cosine"] == pytest.approx(1.0) and by_metric["gt_psnr"] == 100.0
    assert all(r["triplet_id"] == "t1" and r["method"] == "m" for r in rows)
