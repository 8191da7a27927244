"""No edit: B′ = B, the floor every method must beat (directional score 0)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class NoEditConfig:
    """No knobs."""


def no_edit(models, a: Image.Image, a_prime: Image.Image, b: Image.Image, config: NoEditConfig = NoEditConfig(), *,
            seed: int = 0, cache=None, change_map=None, instruction: str | None = None) -> Image.Image:
    """B′ = B."""
    return b.copy()
