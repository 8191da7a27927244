"""DIFF-token training (Difference Inversion, step 4): learn D̃, n rows in the token table's space,
holding only what changed from A to A′.

    before = [SOT, PEZ(A′), −D̃, EOT, pad…]  must reconstruct A
    after  = [SOT, PEZ(A),  +D̃, EOT, pad…]  must reconstruct A′
    L = λtc·Ltc + λclip·(1 − cos(ET([SOT, D̃, EOT, pad…]), Dinter))

Only D̃ has gradients; every model is frozen and in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ops.progress import reporter
from ops.text import clip_specials, encode_diffusion_text, pipeline_specials, token_sequence

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


def pair_sequences(table: torch.Tensor, prompt_a: torch.Tensor, prompt_a_prime: torch.Tensor,
                   tokens: torch.Tensor, specials, negation: str = "negate"):
    """(embeds (2, L, D), ids (2, L)) for `before` = [SOT, PEZ(A′), −D̃, EOT] and
    `after` = [SOT, PEZ(A), +D̃, EOT] (negation='remove': D̃ absent from `before`)."""
    before = token_sequence(table, [prompt_a_prime] + ([-tokens] if negation == "negate" else []), specials)
    after = token_sequence(table, [prompt_a, tokens], specials)
    return torch.stack([before[0], after[0]]), torch.stack([before[1], after[1]])


def train_diff_tokens(pipe, clip, z_a: torch.Tensor, z_a_prime: torch.Tensor, prompt_a: list[int],
                      prompt_a_prime: list[int], delta: torch.Tensor, config: DIConfig, seed: int = 0,
                      progress=None) -> DiffTokens:
    """Train D̃ for one pair. `z_a`, `z_a_prime`: E(A), E(A′) scaled latents (1, C, h, w);
    `prompt_*`: PEZ (or caption) token ids; `delta`: the target CLIP delta (E,); `config`: the
    DIFF-token fields of a DIConfig (n_tokens, steps, lr, weight_decay, λ's, switches)."""
    progress = reporter(progress, "DIFF tokens")
    unet, text_encoder, scheduler = pipe.unet, pipe.text_encoder, pipe.scheduler
    table = text_encoder.get_input_embeddings().weight.detach()
    if clip.token_table.shape != table.shape:
        raise ValueError(f"the joint CLIP's token table {tuple(clip.token_table.shape)} is not the diffusion text "
                         f"encoder's {tuple(table.shape)}: DIFF tokens need a CLIP that shares V with Tsd")
    sd_specials, clip_specials_ = pipeline_specials(pipe), clip_specials(clip)
    device = z_a.device
    generator = torch.Generator().manual_seed(seed)

    if config.init == "zero":
        init = torch.zeros(config.n_tokens, table.shape[1])
    else:
        init = table.cpu()[torch.randint(table.shape[0] - 2, (config.n_tokens,), generator=generator)].clone()
    tokens = torch.nn.Parameter(init.to(device, table.dtype))
    optimizer = torch.optim.AdamW([tokens], lr=config.lr, weight_decay=config.weight_decay)
    ids_a, ids_a_prime = torch.tensor(prompt_a), torch.tensor(prompt_a_prime)
    target_delta = F.normalize(delta.to(device).float(), dim=-1)
    z_pair = torch.cat([z_a, z_a_prime])
    n_train = scheduler.config.num_train_timesteps
    curve: dict[str, list[float]] = {"tc": [], "clip": [], "total": []}

    for step in range(config.steps):
        loss = torch.zeros((), device=device)
        if config.token_consistency:
            embeds, ids = pair_sequences(table, ids_a, ids_a_prime, tokens, sd_specials, config.negation)
            cond = encode_diffusion_text(text_encoder, embeds, ids)
            t = torch.randint(0, n_train, (2,), generator=generator).to(device)
            noise = torch.randn(z_pair.shape, generator=generator).to(device, z_pair.dtype)
            z_t = scheduler.add_noise(z_pair, noise, t)
            pred = unet(z_t, t, cond).sample
            target = diffusion_target(scheduler, z_pair, noise, t)
            # Ltc = MSE(before → A) + MSE(after → A′)
            tc = F.mse_loss(pred[0].float(), target[0].float()) + F.mse_loss(pred[1].float(), target[1].float())
            loss = loss + config.lambda_tc * tc
            curve["tc"].append(tc.item())
        if config.clip_loss:
            embeds, ids = token_sequence(clip.token_table, [tokens], clip_specials_)
            text = clip.encode_token_embeddings(embeds[None], ids[None])[0]
            clip_term = 1 - F.cosine_similarity(text.float(), target_delta, dim=-1)
            loss = loss + config.lambda_clip * clip_term
            curve["clip"].append(clip_term.item())
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"DIFF-token loss became {loss.item()} at step {step}; "
                                        f"lower lr (now {config.lr}) or check the inputs for NaN")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        curve["total"].append(loss.item())
        progress(step + 1, config.steps)
    return DiffTokens(tokens.detach().clone(), curve)
