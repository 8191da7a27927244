"""Captions as a cached step, and the edit text of the text-guided baselines."""

from __future__ import annotations

from PIL import Image

from ops.cache import Cache


def caption_key(models, image: Image.Image) -> tuple:
    return (models.weights_key, image)


def caption(models, image: Image.Image, cache: Cache) -> str:
    """The profile captioner's caption of `image` (BLIP-2; retrieval in the toy world)."""
    return cache("caption", caption_key(models, image), lambda: models.captioner.caption([image])[0])


TEXT_SOURCES = ("instruction", "caption")


def check_text_source(text: str) -> None:
    if text not in TEXT_SOURCES:
        raise ValueError(f"text must be one of {TEXT_SOURCES}, got {text!r}")


def edit_text(models, text: str, instruction: str | None, a_prime: Image.Image, cache: Cache) -> str:
    """text = "instruction": the triplet's instruction where it has one, else A′'s caption;
    text = "caption": always A′'s caption."""
    check_text_source(text)
    return instruction if text == "instruction" and instruction else caption(models, a_prime, cache)
