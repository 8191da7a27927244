"""DIFF-token training (Difference Inversion, step 4): learn D̃, n rows in the token table's space,
holding only what changed from A to A′.

    before = [SOT, PEZ(A′), −D̃, EOT, pad…]  must reconstruct A
    after  = [SOT, PEZ(A),  +D̃, EOT, pad…]  must reconstruct A′
    L = λtc·Ltc + λclip·(1 − cos(ET([SOT, D̃, EOT, pad…]), Dinter))

(changed_tokens='drop', a switch: PEZ(A) without the tokens PEZ(A′) lacks and PEZ(A′) without
those PEZ(A) lacks; generation then leaves the first out of B's prompt too.)

Only D̃ has gradients; every model is frozen and in eval mode. Read top to bottom: the prompt
helpers, `init_tokens`, `token_consistency_loss`, `clip_loss`, then the loop in
`train_diff_tokens_batch`.

On SDXL (two text encoders, `ops.text.DiffusionText`) a row of D̃ is a row of each encoder's
token table side by side: both halves enter `before`/`after` (each encoder reads its own), and
the CLIP loss reads the second half, the one the joint CLIP (ViT-bigG-14, SDXL's second
encoder) shares. The first half learns from token consistency alone.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ops.cache import single
from ops.progress import reporter
from ops.text import DiffusionText, clip_specials, token_sequence


@dataclass
class DiffTokens:
    tokens: torch.Tensor  # D̃, (n, D)
    curve: dict[str, list[float]] = field(default_factory=dict)  # per step: tc, clip, total


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class DiffTraining:
    """What the trainer reads: the DIFF-token fields of a DIConfig, which holds their defaults and
    meanings (ops.difference_inversion.DIConfig.training builds this)."""

    n_tokens: int
    steps: int
    lr: float
    weight_decay: float
    lambda_tc: float
    lambda_clip: float
    token_consistency: bool
    clip_loss: bool
    init: str  # zero | random | added
    negation: str  # negate | remove
    changed_tokens: str  # keep | drop
    precision: str  # fp32 | bf16


@dataclass
class PairInputs:
    """One (A, A′) pair to train D̃ for: E(A), E(A′) scaled latents (1, C, h, w) each, the PEZ (or
    caption) token ids of A and A′, the target CLIP delta (E,) and the pair's own seed."""

    z_a: torch.Tensor
    z_a_prime: torch.Tensor
    prompt_a: list[int]
    prompt_a_prime: list[int]
    delta: torch.Tensor
    seed: int


# ----------------------------------------------------------------------------- prompts and sequences


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


def with_tokens(prompt: torch.Tensor, tokens: torch.Tensor | None) -> list[torch.Tensor]:
    """The parts [prompt, D̃] (D̃ after the prompt, as the paper places it), or [prompt] without D̃."""
    return [prompt] if tokens is None else [prompt, tokens]


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
               negation: str = "negate") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parts of `before` = [PEZ(A′), −D̃] and `after` = [PEZ(A), +D̃] (negation='remove':
    D̃ absent from `before`), between SOT and EOT."""
    return with_tokens(prompt_a_prime, -tokens if negation == "negate" else None), with_tokens(prompt_a, tokens)


# ----------------------------------------------------------------------------- the parts of training


def init_tokens(tsd: DiffusionText, settings: DiffTraining, pair: PairInputs,
                generator: torch.Generator) -> torch.Tensor:
    """D̃'s start (n, D), on the CPU: zero (the paper's), random vocabulary rows drawn from the pair's
    stream, or (init='added') the rows of the tokens A′'s prompt adds to A's, in A′'s order, the rest zero."""
    if settings.init == "random":
        return tsd.rows(torch.randint(tsd.vocab_size - 2, (settings.n_tokens,), generator=generator)).cpu()
    init = torch.zeros(settings.n_tokens, tsd.width)
    ids = added_ids(pair.prompt_a, pair.prompt_a_prime)[:settings.n_tokens] if settings.init == "added" else []
    if ids:
        init[:len(ids)] = tsd.rows(torch.tensor(ids)).cpu()
    return init


def token_consistency_loss(tsd: DiffusionText, scheduler, z: torch.Tensor, prompts: list[tuple], tokens: list,
                           generators: list[torch.Generator], negation: str, autocast) -> torch.Tensor:
    """Ltc per pair, (k,): MSE(before → A) + MSE(after → A′), each at its own random timestep, the k
    pairs' 2k sequences in one UNet batch. `z` (2k, C, h, w): E(A), E(A′) of each pair; `prompts`: the
    (A, A′) prompt ids of each; t and ε come from each pair's own stream, t first."""
    sequences = [parts for (ids_a, ids_a_prime), d in zip(prompts, tokens)
                 for parts in pair_parts(ids_a, ids_a_prime, d, negation)]  # before, after of each pair
    with autocast:
        cond = tsd.encode(sequences)  # (2k, L, D)
    n_train = scheduler.config.num_train_timesteps
    t = torch.cat([torch.randint(0, n_train, (2,), generator=g) for g in generators]).to(z.device)  # (2k,)
    noise = torch.cat([torch.randn((2, *z.shape[1:]), generator=g) for g in generators])  # (2k, C, h, w)
    mse = denoising_mse(tsd.unet, scheduler, z, noise.to(z.device, z.dtype), t, cond, autocast)  # (2k,)
    return mse.view(len(tokens), 2).sum(1)


def clip_loss(clip, rows: list[torch.Tensor], target: torch.Tensor, autocast) -> torch.Tensor:
    """Lclip per pair, (k,): 1 − cos(ET([SOT, D̃, EOT]), Dinter), the k sequences in one text-tower
    batch. `rows`: each D̃'s columns of the joint CLIP's table; `target` (k, E): unit Dinter."""
    sequences = [token_sequence(clip.token_table, [r], clip_specials(clip)) for r in rows]
    with autocast:
        text = clip.encode_token_embeddings(torch.stack([e for e, _ in sequences]),
                                            torch.stack([i for _, i in sequences]))  # (k, E)
    return 1 - F.cosine_similarity(text.float(), target, dim=-1)


def group_owners(groups: list | None, n: int) -> list[int]:
    """Per pair, the first pair of its group: whose D̃ and optimiser it trains (by default its own)."""
    if groups is None:
        return list(range(n))
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group labels for {n} pairs")
    first = {}
    for i, label in enumerate(groups):
        first.setdefault(label, i)
    return [first[label] for label in groups]


def stop_diverged(loss: torch.Tensor, active: list[int], owner: list[int], results: list, step: int,
                  lr: float) -> list[int]:
    """The positions in `active` that go on: a NaN or inf loss stops its pair's group (by default the
    pair alone), each member's TrainingDivergedError put in its place in `results`."""
    finite = torch.isfinite(loss).tolist()
    failed = {owner[i]: loss[j].item() for j, i in enumerate(active) if not finite[j]}
    for i in active:
        if owner[i] in failed:
            results[i] = TrainingDivergedError(f"DIFF-token loss became {failed[owner[i]]} at step {step}; "
                                               f"lower lr (now {lr}) or check the inputs for NaN")
    return [j for j, i in enumerate(active) if owner[i] not in failed]


# ----------------------------------------------------------------------------- the loop


def train_diff_tokens(pipe, clip, z_a: torch.Tensor, z_a_prime: torch.Tensor, prompt_a: list[int],
                      prompt_a_prime: list[int], delta: torch.Tensor, settings: DiffTraining, seed: int = 0,
                      progress=None) -> DiffTokens:
    """Train D̃ for one pair (a batch of one; a NaN or inf loss raises TrainingDivergedError)."""
    pair = PairInputs(z_a, z_a_prime, prompt_a, prompt_a_prime, delta, seed)
    return single(train_diff_tokens_batch(pipe, clip, [pair], settings, progress))


def train_diff_tokens_batch(pipe, clip, pairs: list[PairInputs], settings: DiffTraining, progress=None,
                            groups: list | None = None) -> list[DiffTokens | TrainingDivergedError]:
    """Train one D̃ per pair, k pairs at once: one UNet batch of 2k, one text-tower batch of k. Each pair
    keeps its own D̃, AdamW state and random stream (drawn in the order a pair alone draws it), and the
    loss is a sum of per-pair losses through frozen models without batch statistics, so a pair's D̃ is
    the one it gets alone up to the float rounding of batched kernels (tests/test_diff_tokens.py). A pair
    whose loss becomes NaN or inf gets its TrainingDivergedError in its place; the others go on.

    `groups` (one label per pair): pairs with one label train **one** D̃ on the sum of their losses (its
    init and optimiser its first pair's; each pair still draws its own timesteps and noise), and every
    member gets it; one member diverging stops the group. Default: each pair alone."""
    tsd, scheduler, device = DiffusionText(pipe), pipe.scheduler, pairs[0].z_a.device
    shared = tsd.tables[-1]  # the table the joint CLIP shares (SDXL: the second encoder's)
    if clip.token_table.shape != shared.shape:
        raise ValueError(f"the joint CLIP's token table {tuple(clip.token_table.shape)} is not the diffusion text "
                         f"encoder's {tuple(shared.shape)}: DIFF tokens need a CLIP that shares V with Tsd")
    progress = reporter(progress, "DIFF tokens" + (f" ({len(pairs)} pairs)" if len(pairs) > 1 else ""))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16")

    # per pair: its random stream, prompts, latents (2, C, h, w) and unit target (E,); per group: D̃ and AdamW
    generators = [torch.Generator().manual_seed(p.seed) for p in pairs]
    prompts = [tuple(torch.tensor(ids) for ids in training_prompts(p.prompt_a, p.prompt_a_prime,
                                                                    settings.changed_tokens)) for p in pairs]
    # contiguous: the VAE may hand out channels-last latents, on which the UNet's kernels round differently
    latents = [torch.cat([p.z_a, p.z_a_prime]).contiguous() for p in pairs]
    targets = torch.stack([F.normalize(p.delta.to(device).float(), dim=-1) for p in pairs])  # (k, E)
    owner = group_owners(groups, len(pairs))
    tokens = {g: torch.nn.Parameter(init_tokens(tsd, settings, pairs[g], generators[g]).to(device, shared.dtype))
              for g in sorted(set(owner))}
    optimizers = {g: torch.optim.AdamW([d], lr=settings.lr, weight_decay=settings.weight_decay)
                  for g, d in tokens.items()}
    curves = [{"tc": [], "clip": [], "total": []} for _ in pairs]
    results: list[DiffTokens | TrainingDivergedError | None] = [None] * len(pairs)
    active = list(range(len(pairs)))  # the pairs still training; k = len(active) below

    for step in range(settings.steps):
        d = [tokens[owner[i]] for i in active]  # k × (n, D): each pair's D̃
        # forward: L = λtc·Ltc + λclip·Lclip, per pair (k,)
        loss = torch.zeros(len(active), device=device)
        if settings.token_consistency:
            tc = token_consistency_loss(tsd, scheduler, torch.cat([latents[i] for i in active]),
                                        [prompts[i] for i in active], d, [generators[i] for i in active],
                                        settings.negation, autocast)  # (k,)
            loss = loss + settings.lambda_tc * tc
            for i, value in zip(active, tc.tolist()):
                curves[i]["tc"].append(value)
        if settings.clip_loss:
            lclip = clip_loss(clip, [x[:, tsd.clip_columns] for x in d], targets[active], autocast)  # (k,)
            loss = loss + settings.lambda_clip * lclip
            for i, value in zip(active, lclip.tolist()):
                curves[i]["clip"].append(value)
        # a NaN or inf stops its pair's group; the rest go on
        kept = stop_diverged(loss, active, owner, results, step, settings.lr)
        loss, active = loss[kept], [active[j] for j in kept]
        if not active:
            break
        # backward and update: groups share no parameter, so each D̃ gets only its own pairs' gradient
        live = sorted({owner[i] for i in active})
        for g in live:
            optimizers[g].zero_grad(set_to_none=True)
        loss.sum().backward()
        for g in live:
            optimizers[g].step()
        for i, value in zip(active, loss.tolist()):
            curves[i]["total"].append(value)
        progress(step + 1, settings.steps)
    for i in active:
        results[i] = DiffTokens(tokens[owner[i]].detach().clone(), curves[i])
    return results
