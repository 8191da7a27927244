"""Token sequences built in token *input* space, and the text encoders run on them.

A sequence is `[SOT, part, part, …, EOT, pad…]` where a part is either token
ids (looked up in the shared token table V) or free rows in V's space (PEZ
embeddings, DIFF tokens, −D̃). Positional embeddings are added by the encoder
afterwards, so negating a part never negates a position.

`DiffusionText` is a pipeline's whole text side seen that way: one encoder for SD 1.x/2.x,
two for SDXL (their token tables side by side, so a free row holds a row of each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Specials:
    sot: int
    eot: int
    pad: int
    length: int  # context length


def tokenizer_specials(tok) -> Specials:
    return Specials(tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.model_max_length)


def pipeline_specials(pipe) -> Specials:
    return tokenizer_specials(pipe.tokenizer)


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


def run_text_encoder(text_encoder, embeds: torch.Tensor, ids: torch.Tensor, **kwargs):
    """A transformers text encoder's output on input embeddings (B, L, D) instead of its table's rows.

    The encoder is called normally with `ids`; a forward hook swaps the output of its
    token-embedding layer for `embeds`, so every model-specific detail (causal mask,
    positions, final norm, layer count, EOT pooling by `ids`) stays the library's own."""
    if embeds.dim() == 2:
        embeds, ids = embeds[None], ids[None]
    layer = text_encoder.get_input_embeddings()
    handle = layer.register_forward_hook(lambda _m, _i, out: embeds.to(out.dtype))
    try:
        return text_encoder(input_ids=ids, **kwargs)
    finally:
        handle.remove()


def encode_diffusion_text(text_encoder, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The diffusion model's text encoder (Tsd) on input embeddings: (B, L, D) → (B, L, H)."""
    return run_text_encoder(text_encoder, embeds, ids).last_hidden_state


@torch.no_grad()
def encode_prompt(pipe, prompt: str) -> torch.Tensor:
    """Tsd(prompt) exactly as the pipeline tokenises it (used for `Tsd("")`)."""
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(pipe.text_encoder.device)
    return pipe.text_encoder(input_ids=ids).last_hidden_state


class PackedConditionUNet(torch.nn.Module):
    """SDXL's UNet called as SD's is, `unet(z, t, cond).sample`, with `cond` one tensor.

    SDXL conditions on three things: the two encoders' token states side by side (B, L, H), the
    second encoder's pooled, projected text (B, P) and six size numbers ("time ids": original
    height and width, crop top and left, target height and width). `DiffusionText` packs the last
    two into `rows` extra rows after the token states, zero-padded to width H; this module unpacks
    them. So every DDIM, CFG and batching step (a `torch.cat` of conditionings, an `expand`) works
    on SDXL unchanged."""

    def __init__(self, unet, pooled_dim: int):
        super().__init__()
        self.unet, self.pooled_dim = unet, pooled_dim
        self.rows = packed_rows(pooled_dim, unet.config.cross_attention_dim)

    def forward(self, sample: torch.Tensor, timestep, cond: torch.Tensor):
        states, extra = cond[:, :-self.rows], cond[:, -self.rows:].flatten(1)
        added = {"text_embeds": extra[:, :self.pooled_dim], "time_ids": extra[:, self.pooled_dim:self.pooled_dim + 6]}
        return self.unet(sample, timestep, encoder_hidden_states=states, added_cond_kwargs=added)


def packed_rows(pooled_dim: int, width: int) -> int:
    return math.ceil((pooled_dim + 6) / width)


class DiffusionText:
    """A diffusers pipeline's text side as Difference Inversion uses it: token ids and free rows
    (D̃, −D̃) in, the UNet's conditioning out, and the UNet that reads it.

    - SD 1.x / 2.x: one text encoder; a free row lives in its token table; the conditioning is
      the encoder's last hidden states (B, L, H), exactly `encode_diffusion_text`.
    - SDXL: two encoders (CLIP ViT-L, then OpenCLIP ViT-bigG) over the same BPE vocabulary, so a
      token id is the same word in both, and a free row is a row of each table side by side,
      width D₁ + D₂. Each encoder gets its own columns of every free row and its own pad token;
      the conditioning is both encoders' penultimate hidden states concatenated (as the SDXL
      pipeline does), plus the second encoder's pooled projection and the time ids packed as
      extra rows (`PackedConditionUNet`). The joint CLIP (bigG) shares the second table:
      `clip_columns` are the columns its CLIP loss reads.
    `unconditional()` is Tsd(""), or zeros where the pipeline's `force_zeros_for_empty_prompt`
    says so (SDXL base)."""

    def __init__(self, pipe):
        second = getattr(pipe, "text_encoder_2", None)
        pairs = [(pipe.tokenizer, pipe.text_encoder)] + ([(pipe.tokenizer_2, second)] if second is not None else [])
        self.pipe, self.is_xl = pipe, second is not None
        self.encoders = [encoder for _, encoder in pairs]
        self.specials = [tokenizer_specials(tok) for tok, _ in pairs]
        self.tables = [encoder.get_input_embeddings().weight.detach() for encoder in self.encoders]
        widths = [t.shape[1] for t in self.tables]
        self.columns = [slice(sum(widths[:k]), sum(widths[:k + 1])) for k in range(len(widths))]
        self.clip_columns = self.columns[-1]
        self.unet = PackedConditionUNet(pipe.unet, second.config.projection_dim) if self.is_xl else pipe.unet

    @property
    def vocab_size(self) -> int:
        return self.tables[0].shape[0]

    @property
    def width(self) -> int:
        """D₁ [+ D₂]: the width of a free row."""
        return self.columns[-1].stop

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The rows of token `ids` in the space of free rows: (k, D₁ [+ D₂]), every table side by side."""
        return torch.cat([table[ids.to(table.device)] for table in self.tables], dim=1)

    @property
    def device(self) -> torch.device:
        return self.tables[0].device

    def encode(self, sequences: list[list[torch.Tensor]]) -> torch.Tensor:
        """Conditionings (B, L [+ rows], H) of B sequences, each a list of parts (ids or free rows)."""
        if not self.is_xl:
            built = [token_sequence(self.tables[0], parts, self.specials[0]) for parts in sequences]
            return encode_diffusion_text(self.encoders[0], torch.stack([e for e, _ in built]),
                                         torch.stack([i for _, i in built]))
        states = []
        for encoder, table, specials, cols in zip(self.encoders, self.tables, self.specials, self.columns):
            built = [token_sequence(table, self._own(parts, cols), specials) for parts in sequences]
            out = run_text_encoder(encoder, torch.stack([e for e, _ in built]), torch.stack([i for _, i in built]),
                                   output_hidden_states=True)
            states.append(out.hidden_states[-2])
        pooled = out[0]  # the last (second) encoder's projected EOT feature
        return self._pack(torch.cat(states, dim=-1), pooled)

    @staticmethod
    def _own(parts: list[torch.Tensor], cols: slice) -> list[torch.Tensor]:
        return [p[:, cols] if p.is_floating_point() else p for p in parts]

    def _pack(self, states: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        size = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        time_ids = torch.tensor([size, size, 0, 0, size, size], device=states.device, dtype=states.dtype)
        extra = torch.cat([pooled.to(states.dtype), time_ids.expand(len(states), -1)], dim=-1)
        rows = packed_rows(pooled.shape[-1], states.shape[-1])
        extra = F.pad(extra, (0, rows * states.shape[-1] - extra.shape[-1])).view(len(states), rows, -1)
        return torch.cat([states, extra], dim=1)

    @torch.no_grad()
    def prompt(self, text: str) -> torch.Tensor:
        """Tsd(text) (1, L [+ rows], H), tokenised as the pipeline tokenises it."""
        if not self.is_xl:
            return encode_prompt(self.pipe, text)
        ids = self.pipe.tokenizer(text, add_special_tokens=False, truncation=True,
                                  max_length=self.specials[0].length - 2).input_ids
        return self.encode([[torch.tensor(ids, dtype=torch.long)]])

    @torch.no_grad()
    def unconditional(self) -> torch.Tensor:
        if not (self.is_xl and self.pipe.config.get("force_zeros_for_empty_prompt", False)):
            return self.prompt("")
        like = {"device": self.device, "dtype": self.encoders[0].dtype}
        states = torch.zeros(1, self.specials[0].length, sum(e.config.hidden_size for e in self.encoders), **like)
        return self._pack(states, torch.zeros(1, self.encoders[-1].config.projection_dim, **like))
