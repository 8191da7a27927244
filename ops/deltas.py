"""CLIP deltas and their spherical interpolation (Difference Inversion, step 2)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

DELTA_KINDS = ("interpolated", "image", "text")
# where Dtxt comes from: "captions" (the paper's: the difference of the two captions' encodings) |
# "added": the encoding of the words A′'s caption adds to A's, alone ("a large red star" after "a small
# red star" → ET("large")), the caption delta where A′'s caption adds no word
TEXT_DELTA_SOURCES = ("captions", "added")


@dataclass
class Deltas:
    image: torch.Tensor  # n(Dimg), (E,)
    text: torch.Tensor  # n(Dtxt), (E,)
    interpolated: torch.Tensor  # slerp(n(Dimg), n(Dtxt); α), (E,)

    def pick(self, kind: str) -> torch.Tensor:
        if kind not in DELTA_KINDS:
            raise ValueError(f"delta must be one of {DELTA_KINDS}, got {kind!r}")
        return getattr(self, kind)


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float, eps: float = 1e-4) -> torch.Tensor:
    """sin((1−α)θ)/sinθ · a + sin(αθ)/sinθ · b, θ = angle(a, b); lerp when θ < eps.
    α = 0 gives a, α = 1 gives b."""
    cos = F.cosine_similarity(a, b, dim=-1).clamp(-1, 1)
    theta = torch.acos(cos)
    if theta.abs().item() < eps:
        return (1 - alpha) * a + alpha * b
    return (torch.sin((1 - alpha) * theta) * a + torch.sin(alpha * theta) * b) / torch.sin(theta)


def _unit_delta(after: torch.Tensor, before: torch.Tensor, what: str) -> torch.Tensor:
    delta = F.normalize(after, dim=-1) - F.normalize(before, dim=-1)
    norm = delta.norm()
    if not torch.isfinite(norm) or norm < 1e-6:
        raise ValueError(f"the {what} delta is zero: A and A′ look identical to the CLIP, "
                         "there is no difference to learn")
    return delta / norm


def added_words(caption_a: str, caption_a_prime: str) -> str:
    """The words of A′'s caption that A's lacks, in A′'s order (case and punctuation ignored)."""
    def words(text: str) -> list[str]:
        return re.findall(r"[\w']+", text.lower())

    old = set(words(caption_a))
    return " ".join(w for w in words(caption_a_prime) if w not in old)


def clip_deltas(clip, a: Image.Image, a_prime: Image.Image, caption_a: str, caption_a_prime: str,
                alpha: float = 0.8, text_source: str = "captions") -> Deltas:
    """Dimg = n(EI(A′)) − n(EI(A)), Dtxt = n(ET(capA′)) − n(ET(capA)), both normalised, then slerp.
    text_source='added': Dtxt = n(ET(the words capA′ adds to capA)) instead, where there are any."""
    if text_source not in TEXT_DELTA_SOURCES:
        raise ValueError(f"text_source must be one of {TEXT_DELTA_SOURCES}, got {text_source!r}")
    img = clip.encode_images([a, a_prime])
    d_img = _unit_delta(img[1], img[0], "image")
    added = added_words(caption_a, caption_a_prime) if text_source == "added" else ""
    if added:
        d_txt = F.normalize(clip.encode_texts([added])[0], dim=-1)
    elif caption_a.strip() == caption_a_prime.strip():
        # Same caption → no text difference; the image delta is the only evidence.
        d_txt = d_img.clone()
    else:
        txt = clip.encode_texts([caption_a, caption_a_prime])
        d_txt = _unit_delta(txt[1], txt[0], "text")
    return Deltas(d_img, d_txt, slerp(d_img, d_txt, alpha))
