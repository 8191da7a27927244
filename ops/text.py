"""Token sequences built in token *input* space, and the text encoders run on them.

A sequence is `[SOT, part, part, …, EOT, pad…]` where a part is either token
ids (looked up in the shared token table V) or free rows in V's space (PEZ
embeddings, DIFF tokens, −D̃). Positional embeddings are added by the encoder
afterwards, so negating a part never negates a position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Specials:
    sot: int
    eot: int
    pad: int
    length: int  # context length


def pipeline_specials(pipe) -> Specials:
    tok = pipe.tokenizer
    return Specials(tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.model_max_length)


def clip_specials(clip) -> Specials:
    return Specials(clip.sot_id, clip.eot_id, clip.pad_id, clip.context_length)


def token_sequence(table: torch.Tensor, parts: list[torch.Tensor],
                   specials: Specials) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (embeds (L, D), ids (L,)) for `[SOT, *parts, EOT, pad…]`.

    An integer part is ids; a floating part is rows (k, D) placed as they are
    (their ids are recorded as `pad`, a placeholder that no pooling reads)."""
    rows = [table[specials.sot][None]]
    ids = [torch.tensor([specials.sot], device=table.device)]
    for part in parts:
        if part.dtype in (torch.int64, torch.int32):
            part = part.to(table.device).long().flatten()
            rows.append(table[part])
            ids.append(part)
        else:
            rows.append(part.to(table.dtype))
            ids.append(torch.full((part.shape[0],), specials.pad, device=table.device))
    rows.append(table[specials.eot][None])
    ids.append(torch.tensor([specials.eot], device=table.device))
    used = sum(r.shape[0] for r in rows)
    if used > specials.length:
        raise ValueError(f"token sequence of {used} tokens exceeds the context length {specials.length}")
    n_pad = specials.length - used
    rows.append(table[specials.pad][None].expand(n_pad, -1))
    ids.append(torch.full((n_pad,), specials.pad, device=table.device))
    return torch.cat(rows), torch.cat(ids)


def encode_diffusion_text(text_encoder, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The diffusion model's text encoder (Tsd) on input embeddings: (B, L, D) → (B, L, H).

    The encoder is called normally with `ids`; a forward hook swaps the output of its
    token-embedding layer for `embeds`, so every model-specific detail (causal mask,
    positions, final norm, layer count) stays the library's own."""
    if embeds.dim() == 2:
        embeds, ids = embeds[None], ids[None]
    layer = text_encoder.get_input_embeddings()
    handle = layer.register_forward_hook(lambda _m, _i, out: embeds.to(out.dtype))
    try:
        return text_encoder(input_ids=ids).last_hidden_state
    finally:
        handle.remove()


@torch.no_grad()
def encode_prompt(pipe, prompt: str) -> torch.Tensor:
    """Tsd(prompt) exactly as the pipeline tokenises it (used for `Tsd("")`)."""
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(pipe.text_encoder.device)
    return pipe.text_encoder(input_ids=ids).last_hidden_state
