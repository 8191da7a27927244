"""PEZ hard prompts (Wen et al., "Hard Prompts Made Easy"), step 3 of Difference Inversion.

Soft embeddings P are kept; every step projects each row to its cosine-nearest
allowed vocabulary row, scores the projected (hard) prompt with the joint CLIP,
and applies the gradient taken at the projected embeddings to P.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image

from ops.progress import Progress, reporter
from ops.text import clip_specials, token_sequence


@dataclass
class HardPrompt:
    token_ids: list[int]
    text: str
    cosine: float
    curve: list[float] = field(default_factory=list)  # cosine of the projected prompt per step


def allowed_token_mask(clip) -> torch.Tensor:
    """True for rows PEZ may choose: never SOT, EOT or padding."""
    mask = torch.ones(clip.token_table.shape[0], dtype=torch.bool, device=clip.token_table.device)
    mask[[clip.sot_id, clip.eot_id, clip.pad_id]] = False
    return mask


def nearest_tokens(soft: torch.Tensor, table_normed: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    sims = F.normalize(soft, dim=-1) @ table_normed.T
    return sims.masked_fill(~allowed, float("-inf")).argmax(dim=-1)


def pez_prompt(clip, images: list[Image.Image], n_tokens: int = 10, steps: int = 3000, lr: float = 0.1,
               weight_decay: float = 0.1, seed: int = 0, progress: Progress | None = None) -> HardPrompt:
    """Optimise an `n_tokens` hard prompt whose CLIP text feature matches the images'."""
    progress = reporter(progress, "PEZ prompt")
    generator = torch.Generator().manual_seed(seed)
    table = clip.token_table.detach()
    table_normed = F.normalize(table, dim=-1)
    allowed = allowed_token_mask(clip)
    specials = clip_specials(clip)
    target = F.normalize(clip.encode_images(images), dim=-1).mean(0, keepdim=True)

    choices = torch.nonzero(allowed).flatten().cpu()
    init = choices[torch.randint(len(choices), (n_tokens,), generator=generator)].to(table.device)
    soft = torch.nn.Parameter(table[init].clone())
    optimizer = torch.optim.AdamW([soft], lr=lr, weight_decay=weight_decay)

    best_ids, best_cos, curve = init, -2.0, []
    for step in range(steps):
        with torch.no_grad():
            ids = nearest_tokens(soft, table_normed, allowed)
        projected = table[ids].clone().requires_grad_(True)
        embeds, seq_ids = token_sequence(table, [projected], specials)
        text = clip.encode_token_embeddings(embeds[None], seq_ids[None])
        cosine = F.cosine_similarity(text, target).mean()
        (1 - cosine).backward()
        soft.grad = projected.grad
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = cosine.item()
        curve.append(value)
        if value > best_cos:
            best_cos, best_ids = value, ids.clone()
        progress(step + 1, steps)
    token_ids = best_ids.tolist()
    return HardPrompt(token_ids, clip.tokenizer.decode(token_ids).strip(), best_cos, curve)
