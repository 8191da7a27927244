"""Turn an open_clip text tower into the transformers `CLIPTextModel` that a
Stable Diffusion 2.x pipeline uses as its text encoder (or, with its projection, the
`CLIPTextModelWithProjection` that is SDXL's second text encoder).

SD 2.x does exactly this with OpenCLIP ViT-H-14: its `text_encoder` is the
OpenCLIP text transformer without the last residual block (the "penultimate
layer" conditioning) followed by the tower's final LayerNorm; the token table
is the same tensor. `drop_last_layers=1` reproduces that.
"""

from __future__ import annotations

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection


def open_clip_text_config(model, drop_last_layers: int = 1, sot_id: int | None = None,
                          eot_id: int | None = None) -> CLIPTextConfig:
    vocab, width = model.token_embedding.weight.shape
    blocks = model.transformer.resblocks
    heads = blocks[0].attn.num_heads
    return CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=blocks[0].mlp.c_fc.out_features,
        num_hidden_layers=len(blocks) - drop_last_layers,
        num_attention_heads=heads,
        max_position_embeddings=model.positional_embedding.shape[0],
        hidden_act="gelu",
        layer_norm_eps=model.ln_final.eps,
        projection_dim=model.text_projection.shape[1],
        bos_token_id=vocab - 2 if sot_id is None else sot_id,
        eos_token_id=vocab - 1 if eot_id is None else eot_id,
        pad_token_id=0,
    )


def open_clip_text_to_hf(model, drop_last_layers: int = 1,
                         with_projection: bool = False) -> CLIPTextModel | CLIPTextModelWithProjection:
    """Copy an open_clip CLIP's text tower into a `CLIPTextModel` (weights copied, not shared).

    `with_projection=True`: a `CLIPTextModelWithProjection` with the tower's text projection, as
    SDXL's second text encoder is OpenCLIP ViT-bigG-14's whole tower (`drop_last_layers=0`; the
    pipeline reads its penultimate hidden states and its projected EOT feature)."""
    config = open_clip_text_config(model, drop_last_layers)
    hf = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    state = {
        "embeddings.token_embedding.weight": model.token_embedding.weight,
        "embeddings.position_embedding.weight": model.positional_embedding,
        "final_layer_norm.weight": model.ln_final.weight,
        "final_layer_norm.bias": model.ln_final.bias,
    }
    for i in range(config.num_hidden_layers):
        block, prefix = model.transformer.resblocks[i], f"encoder.layers.{i}."
        q_w, k_w, v_w = block.attn.in_proj_weight.chunk(3, dim=0)
        q_b, k_b, v_b = block.attn.in_proj_bias.chunk(3, dim=0)
        state.update({
            prefix + "self_attn.q_proj.weight": q_w, prefix + "self_attn.q_proj.bias": q_b,
            prefix + "self_attn.k_proj.weight": k_w, prefix + "self_attn.k_proj.bias": k_b,
            prefix + "self_attn.v_proj.weight": v_w, prefix + "self_attn.v_proj.bias": v_b,
            prefix + "self_attn.out_proj.weight": block.attn.out_proj.weight,
            prefix + "self_attn.out_proj.bias": block.attn.out_proj.bias,
            prefix + "layer_norm1.weight": block.ln_1.weight, prefix + "layer_norm1.bias": block.ln_1.bias,
            prefix + "layer_norm2.weight": block.ln_2.weight, prefix + "layer_norm2.bias": block.ln_2.bias,
            prefix + "mlp.fc1.weight": block.mlp.c_fc.weight, prefix + "mlp.fc1.bias": block.mlp.c_fc.bias,
            prefix + "mlp.fc2.weight": block.mlp.c_proj.weight, prefix + "mlp.fc2.bias": block.mlp.c_proj.bias,
        })
    own = hf.state_dict()
    if with_projection:
        state = {f"text_model.{k}": v for k, v in state.items()}
        proj = model.text_projection
        state["text_projection.weight"] = proj.weight if isinstance(proj, torch.nn.Linear) else proj.T
    state = {k: v.detach().clone() for k, v in state.items()}
    missing = set(own) - set(state) - {k for k in own if k.endswith("position_ids")}
    if missing:
        raise RuntimeError(f"open_clip → CLIPTextModel conversion left weights unset: {sorted(missing)}")
    hf.load_state_dict(state, strict=False)
    return hf.eval()


@torch.no_grad()
def check_conversion(model, hf: CLIPTextModel, ids: torch.Tensor) -> float:
    """Max abs difference between the open_clip tower cut at the same depth and the HF model."""
    x = model.token_embedding(ids) + model.positional_embedding
    for block in model.transformer.resblocks[: hf.config.num_hidden_layers]:
        x = block(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    return (x - hf(input_ids=ids).last_hidden_state).abs().max().item()
