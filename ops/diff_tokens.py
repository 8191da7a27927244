"""DIFF-token training (Difference Inversion, step 4): learn D̃, n rows in the token table's space,
holding only what changed from A to A′.

    before = [SOT, PEZ(A′), −D̃, EOT, pad…]  must reconstruct A
    after  = [SOT, PEZ(A),  +D̃, EOT, pad…]  must reconstruct A′
    L = λtc·Ltc + λclip·(1 − cos(ET([SOT, D̃, EOT, pad…]), Dinter))

(changed_tokens='drop', a switch: PEZ(A) without the tokens PEZ(A′) lacks and PEZ(A′) without
those PEZ(A) lacks; generation then leaves the first out of B's prompt too.)

Only D̃ has gradients; every model is frozen and in eval mode.

On SDXL (two text encoders, `ops.text.DiffusionText`) a row of D̃ is a row of each encoder's
token table side by side: both halves enter `before`/`after` (each encoder reads its own), and
the CLIP loss reads the second half, the one the joint CLIP (ViT-bigG-14, SDXL's second
encoder) shares. The first half learns from token consistency alone.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ops.cache import single
from ops.progress import reporter
from ops.text import DiffusionText, clip_specials, token_sequence

if TYPE_CHECKING:
    from ops.difference_inversion import DIConfig


@dataclass
class DiffTokens:
    tokens: torch.Tensor  # D̃, (n, D)
    curve: dict[str, list[float]] = field(default_factory=dict)  # per step: tc, clip, total


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def diffusion_target(scheduler, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """ε for ε-prediction models, the velocity for v-prediction models (SD 2.1-768)."""
    if scheduler.config.prediction_type == "epsilon":
        return noise
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(z0, noise, t)
    raise ValueError(f"unsupported prediction type {scheduler.config.prediction_type!r}")


def denoising_mse(unet, scheduler, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                  autocast=None) -> torch.Tensor:
    """Per image MSE(target, U(q(z0, t, noise), t, cond)) in float32, the target ε or the velocity
    (`diffusion_target`): token consistency's two terms. `autocast` wraps the UNet's forward pass."""
    with autocast or nullcontext():
        pred = unet(scheduler.add_noise(z0, noise, t), t, cond).sample
    target = diffusion_target(scheduler, z0, noise, t)
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def with_tokens(prompt: torch.Tensor, tokens: torch.Tensor | None, placement: str = "append") -> list[torch.Tensor]:
    """The parts [prompt, D̃] (placement='append', the paper's) or [D̃, prompt] ('prepend')."""
    if tokens is None:
        return [prompt]
    return [prompt, tokens] if placement == "append" else [tokens, prompt]


def changed_tokens(prompt_a: list[int], prompt_a_prime: list[int]) -> tuple[set[int], set[int]]:
    """(removed, added): the token ids of A's prompt that A′'s lacks, and those of A′'s that A's lacks:
    the words the change replaces ("small" → "large"), as the two prompts say it."""
    return set(prompt_a) - set(prompt_a_prime), set(prompt_a_prime) - set(prompt_a)


def added_ids(prompt_a: list[int], prompt_a_prime: list[int]) -> list[int]:
    """The ids A′'s prompt has and A's lacks, each once, in A′'s order ("large" of small → large)."""
    added = changed_tokens(prompt_a, prompt_a_prime)[1]
    return list(dict.fromkeys(i for i in prompt_a_prime if i in added))


def without(prompt: list[int], tokens: set[int]) -> list[int]:
    """`prompt` with every id in `tokens` left out (the order of the rest kept)."""
    return [i for i in prompt if i not in tokens]


def training_prompts(prompt_a: list[int], prompt_a_prime: list[int], mode: str = "keep") -> tuple[list[int], list[int]]:
    """The prompt ids D̃ is trained beside: as they are (mode='keep', the paper's) or, with
    mode='drop', A's without the tokens the change removes and A′'s without those it adds, so that
    `after` = [A's context, +D̃] and `before` = [A′'s context, −D̃]: D̃ supplies the changed value
    instead of overriding the word that names the old one."""
    if mode == "keep":
        return prompt_a, prompt_a_prime
    removed, added = changed_tokens(prompt_a, prompt_a_prime)
    return without(prompt_a, removed), without(prompt_a_prime, added)


def generation_prompt(prompt_b: list[int], removed: set[int], mode: str = "keep") -> list[int]:
    """B's prompt ids beside D̃ at generation: whole (mode='keep', the paper's) or, with mode='drop',
    without `removed`, the tokens the change replaces (A's prompt has them, A′'s not)."""
    return without(prompt_b, removed) if mode == "drop" else list(prompt_b)


def pair_parts(prompt_a: torch.Tensor, prompt_a_prime: torch.Tensor, tokens: torch.Tensor,
               negation: str = "negate", placement: str = "append") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parts of `before` = [PEZ(A′), −D̃] and `after` = [PEZ(A), +D̃] (negation='remove':
    D̃ absent from `before`; placement='prepend': D̃ before the prompt), between SOT and EOT."""
    return (with_tokens(prompt_a_prime, -tokens if negation == "negate" else None, placement),
            with_tokens(prompt_a, tokens, placement))


@dataclass
class PairInputs:
    """One (A, A′) pair to train D̃ for: E(A), E(A′) scaled latents (V, C, h, w), the PEZ (or
    caption) token ids of A and A′, the target CLIP delta (E,) and the pair's own seed. V = 1: the
    pair as it is; V > 1 (DIConfig.augment): V views of it, view k of A beside view k of A′, one
    drawn per step from the pair's own stream."""

    z_a: torch.Tensor
    z_a_prime: torch.Tensor
    prompt_a: list[int]
    prompt_a_prime: list[int]
    delta: torch.Tensor
    seed: int
    # clip_context='b': B's prompt ids, the context the CLIP term reads D̃ in
    context: list[int] | None = None


def train_diff_tokens(pipe, clip, z_a: torch.Tensor, z_a_prime: torch.Tensor, prompt_a: list[int],
                      prompt_a_prime: list[int], delta: torch.Tensor, config: DIConfig, seed: int = 0,
                      progress=None) -> DiffTokens:
    """Train D̃ for one pair (a batch of one; a NaN or inf loss raises TrainingDivergedError)."""
    return single(train_diff_tokens_batch(pipe, clip, [PairInputs(z_a, z_a_prime, prompt_a, prompt_a_prime, delta,
                                                                   seed)], config, progress))


def train_diff_tokens_batch(pipe, clip, pairs: list[PairInputs], config: DIConfig, progress=None,
                            groups: list[int] | None = None) -> list[DiffTokens | TrainingDivergedError]:
    """Train one D̃ per pair, k pairs at once: their `before`/`after` sequences go through the
    text encoder and the UNet as one batch of 2k, their CLIP terms as one batch of k. Each pair
    keeps its own D̃, its own AdamW state and its own random stream (timesteps and noise drawn
    from its own seed, in the order a pair trained alone draws them), so a pair's D̃ is the one it
    gets alone up to the float rounding of batched kernels (tests/test_diff_tokens.py measures
    it). Nothing mixes pairs: the frozen models have no batch statistics, and the loss is a sum
    of per-pair losses, so each D̃'s gradient is its own pair's. A pair whose loss becomes NaN or
    inf stops with its TrainingDivergedError in its place in the result; the others go on.
    `config`: the DIFF-token fields of a DIConfig (n_tokens, steps, lr, weight_decay, λ's, switches).

    `groups` (one label per pair): pairs with the same label train **one** D̃ together, several
    examples of one change (its loss the sum of theirs, its init drawn from its first pair's seed,
    one optimiser; each pair still draws its own timesteps and noise); every member gets that D̃.
    A group stops as a whole when one member's loss becomes NaN or inf. Default: each pair alone."""
    progress = reporter(progress, "DIFF tokens" + (f" ({len(pairs)} pairs)" if len(pairs) > 1 else ""))
    tsd, scheduler = DiffusionText(pipe), pipe.scheduler
    shared = tsd.tables[-1]  # the table the joint CLIP shares (SDXL: the second encoder's)
    if clip.token_table.shape != shared.shape:
        raise ValueError(f"the joint CLIP's token table {tuple(clip.token_table.shape)} is not the diffusion text "
                         f"encoder's {tuple(shared.shape)}: DIFF tokens need a CLIP that shares V with Tsd")
    clip_specials_ = clip_specials(clip)
    device = pairs[0].z_a.device
    n_train = scheduler.config.num_train_timesteps

    # per pair its random stream; per group (a pair alone, by default) D̃ (zero, random vocabulary rows
    # drawn from its first pair's stream, or the rows of the tokens its first pair's A′ prompt adds) and
    # its optimiser
    generators = [torch.Generator().manual_seed(p.seed) for p in pairs]
    labels = list(range(len(pairs))) if groups is None else list(groups)
    if len(labels) != len(pairs):
        raise ValueError(f"{len(labels)} group labels for {len(pairs)} pairs")
    first = {label: i for i, label in reversed(list(enumerate(labels)))}
    owner = [first[label] for label in labels]  # the pair whose D̃ and optimiser a pair uses
    tokens, optimizers = {}, {}
    for i in sorted(first.values()):
        if config.init == "random":
            init = tsd.rows(torch.randint(tsd.vocab_size - 2, (config.n_tokens,), generator=generators[i])).cpu()
        else:
            init = torch.zeros(config.n_tokens, tsd.width)
            if config.init == "added":
                ids = added_ids(pairs[i].prompt_a, pairs[i].prompt_a_prime)[:config.n_tokens]
                if ids:
                    init[:len(ids)] = tsd.rows(torch.tensor(ids)).cpu()
        tokens[i] = torch.nn.Parameter(init.to(device, shared.dtype))
        optimizers[i] = torch.optim.AdamW([tokens[i]], lr=config.lr, weight_decay=config.weight_decay)
    prompts = [training_prompts(p.prompt_a, p.prompt_a_prime, config.changed_tokens) for p in pairs]
    ids_a = [torch.tensor(a) for a, _ in prompts]
    ids_a_prime = [torch.tensor(a_prime) for _, a_prime in prompts]
    target_delta = torch.stack([F.normalize(p.delta.to(device).float(), dim=-1) for p in pairs])
    z_pairs = [torch.stack([p.z_a, p.z_a_prime], dim=1) for p in pairs]  # (V, 2, C, h, w) each
    curves: list[dict[str, list[float]]] = [{"tc": [], "clip": [], "total": []} for _ in pairs]
    results: list[DiffTokens | TrainingDivergedError | None] = [None] * len(pairs)
    active = list(range(len(pairs)))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    contexts = None
    if config.clip_context == "b":
        if any(p.context is None for p in pairs):
            raise ValueError("clip_context='b' needs B's prompt ids for every pair (PairInputs.context)")
        contexts = [torch.tensor(p.context) for p in pairs]
        with torch.no_grad(), autocast:
            plain = [token_sequence(clip.token_table, [c], clip_specials_) for c in contexts]
            context_text = clip.encode_token_embeddings(torch.stack([e for e, _ in plain]),
                                                        torch.stack([i for _, i in plain])).float()

    for step in range(config.steps):
        losses = torch.zeros(len(active), device=device)
        if config.token_consistency:
            # Ltc = MSE(before → A) + MSE(after → A′), per pair, one UNet batch of 2·|active|
            sequences = [parts for i in active
                         for parts in pair_parts(ids_a[i], ids_a_prime[i], tokens[owner[i]], config.negation,
                                                 config.placement)]
            with autocast:
                cond = tsd.encode(sequences)
            views = [z_pairs[i][torch.randint(len(z_pairs[i]), (), generator=generators[i]) if len(z_pairs[i]) > 1
                                else 0] for i in active]  # (2, C, h, w) each: the pair, or one view of it
            t = torch.cat([torch.randint(0, n_train, (2,), generator=generators[i]) for i in active]).to(device)
            noise = torch.cat([torch.randn(v.shape, generator=generators[i]) for i, v in zip(active, views)])
            z0 = torch.cat(views)
            noise = noise.to(device, z0.dtype)
            tc = denoising_mse(tsd.unet, scheduler, z0, noise, t, cond, autocast).view(len(active), 2).sum(1)
            losses = losses + config.lambda_tc * tc
            for j, i in enumerate(active):
                curves[i]["tc"].append(tc[j].item())
        if config.clip_loss:
            # Lclip = 1 − cos(ET([SOT, D̃, EOT]), Dinter), per pair, one text-tower batch
            # (clip_context='b': 1 − cos(ET([SOT, prompt(B), D̃, EOT]) − ET([SOT, prompt(B), EOT]), Dinter))
            rows = {i: tokens[owner[i]][:, tsd.clip_columns] for i in active}
            sequences = [token_sequence(clip.token_table, with_tokens(contexts[i], rows[i], config.placement)
                                        if contexts else [rows[i]], clip_specials_) for i in active]
            with autocast:
                text = clip.encode_token_embeddings(torch.stack([e for e, _ in sequences]),
                                                    torch.stack([i for _, i in sequences]))
            if contexts:
                text = text.float() - context_text[active]
            clip_term = 1 - F.cosine_similarity(text.float(), target_delta[active], dim=-1)
            losses = losses + config.lambda_clip * clip_term
            for j, i in enumerate(active):
                curves[i]["clip"].append(clip_term[j].item())
        finite = torch.isfinite(losses).tolist()
        failed = {owner[i]: losses[j].item() for j, i in enumerate(active) if not finite[j]}
        for i in active:
            if owner[i] in failed:  # a diverged pair stops its group (its own D̃, by default)
                results[i] = TrainingDivergedError(f"DIFF-token loss became {failed[owner[i]]} at step {step}; "
                                                   f"lower lr (now {config.lr}) or check the inputs for NaN")
        kept = [j for j, i in enumerate(active) if owner[i] not in failed]
        active = [active[j] for j in kept]
        if not active:
            break
        groups_now = sorted({owner[i] for i in active})
        for g in groups_now:
            optimizers[g].zero_grad(set_to_none=True)
        # pairs of different groups share no parameter: each D̃ gets its own pairs' gradient
        losses[kept].sum().backward()
        for g in groups_now:
            optimizers[g].step()
        for j, i in zip(kept, active):
            curves[i]["total"].append(losses[j].item())
        progress(step + 1, config.steps)
    for i in active:
        results[i] = DiffTokens(tokens[owner[i]].detach().clone(), curves[i])
    return results
