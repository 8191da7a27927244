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
    """Optimise an `n_tokens` hard prompt whose CLIP text feature matches the images' (a batch of one)."""
    (prompt,) = pez_prompts(clip, [images], n_tokens, steps, lr, weight_decay, [seed], progress)
    return prompt


def pez_prompts(clip, image_sets: list[list[Image.Image]], n_tokens: int = 10, steps: int = 3000, lr: float = 0.1,
                weight_decay: float = 0.1, seeds: list[int] | None = None,
                progress: Progress | None = None) -> list[HardPrompt]:
    """One hard prompt per image set, all optimised together: their projected prompts go through
    the text tower as one batch, each with its own soft prompt, AdamW state and seed (so each is the
    prompt it gets alone, up to the float rounding of batched kernels; the loss is a sum of
    per-prompt terms, so no prompt's gradient sees another's)."""
    seeds = list(seeds) if seeds is not None else [0] * len(image_sets)
    if len(seeds) != len(image_sets):
        raise ValueError(f"{len(image_sets)} image sets but {len(seeds)} seeds")
    progress = reporter(progress, "PEZ prompt" + (f"s ({len(image_sets)})" if len(image_sets) > 1 else ""))
    table = clip.token_table.detach()
    table_normed = F.normalize(table, dim=-1)
    allowed = allowed_token_mask(clip)
    specials = clip_specials(clip)
    targets = torch.cat([F.normalize(clip.encode_images(images), dim=-1).mean(0, keepdim=True)
                         for images in image_sets])

    choices = torch.nonzero(allowed).flatten().cpu()
    softs, optimizers, best_ids = [], [], []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        init = choices[torch.randint(len(choices), (n_tokens,), generator=generator)].to(table.device)
        softs.append(torch.nn.Parameter(table[init].clone()))
        optimizers.append(torch.optim.AdamW([softs[-1]], lr=lr, weight_decay=weight_decay))
        best_ids.append(init)
    best_cos, curves = [-2.0] * len(seeds), [[] for _ in seeds]
    for step in range(steps):
        with torch.no_grad():
            ids = [nearest_tokens(soft, table_normed, allowed) for soft in softs]
        projected = [table[i].clone().requires_grad_(True) for i in ids]
        sequences = [token_sequence(table, [p], specials) for p in projected]
        text = clip.encode_token_embeddings(torch.stack([e for e, _ in sequences]),
                                            torch.stack([i for _, i in sequences]))
        cosine = F.cosine_similarity(text, targets)
        (1 - cosine).sum().backward()
        values = cosine.tolist()
        for j, (soft, optimizer) in enumerate(zip(softs, optimizers)):
            soft.grad = projected[j].grad
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            curves[j].append(values[j])
            if values[j] > best_cos[j]:
                best_cos[j], best_ids[j] = values[j], ids[j].clone()
        progress(step + 1, steps)
    return [HardPrompt(b.tolist(), clip.tokenizer.decode(b.tolist()).strip(), c, curve)
            for b, c, curve in zip(best_ids, best_cos, curves)]
