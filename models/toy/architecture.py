"""Architectures of the toy world's models: the same classes and on-disk formats
as Stable Diffusion 2.1 (diffusers UNet2DConditionModel + AutoencoderKL, whose
latent space the pipeline's AutoencoderTiny — TAESD's architecture — shares;
transformers CLIPTextModel) and OpenCLIP ViT-H-14 (an open_clip CLIP), sized
for a 2-core CPU.
"""

from __future__ import annotations

from models.toy.world import IMAGE_SIZE

CONTEXT_LENGTH = 32  # SD uses 77; the toy grammar's longest prompt with 10 PEZ + 5 DIFF tokens is 17


def clip_model_cfg(vocab_size: int) -> dict:
    """open_clip `model_cfg` of the joint CLIP (and, with another seed and data, the judge)."""
    return {
        "embed_dim": 128,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 4, "width": 128, "head_width": 32,
                       "patch_size": 4, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": vocab_size, "width": 128,
                     "heads": 4, "layers": 4, "mlp_ratio": 2.0},
    }


# open_clip normalisation of the toy CLIPs (images are rendered, not photos: plain [-1, 1])
CLIP_PREPROCESS_CFG = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "size": IMAGE_SIZE,
                       "interpolation": "bicubic", "resize_mode": "shortest"}


def vae_config() -> dict:
    """AutoencoderKL with two down-samplings: 32×32×3 → 8×8×4 (SD: 512 → 64, factor 8)."""
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [32, 64, 96],
        "layers_per_block": 1,
        "norm_num_groups": 16,
        "sample_size": IMAGE_SIZE,
        # no self-attention at the bottleneck: a latent pixel decodes from its neighbourhood
        # only, so an edit confined to a region stays there (change maps, inpainting)
        "mid_block_add_attention": False,
    }


def tiny_vae_config() -> dict:
    """AutoencoderTiny (TAESD's layers: 3×3 convolutions and ReLUs, no normalisation, no
    attention), 32×32×3 → 8×8×4 like `vae_config`: every pixel depends on its neighbourhood
    only, so a latent region can be kept while the rest changes. Latents are the KL VAE's
    *scaled* latents (scaling factor 1), as TAESD's are SD's."""
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "encoder_block_out_channels": [48, 48, 48], "num_encoder_blocks": [1, 2, 2],
        "decoder_block_out_channels": [64, 64, 64], "num_decoder_blocks": [3, 2, 1],
        "act_fn": "relu", "upsampling_scaling_factor": 2, "scaling_factor": 1.0,
    }


def unet_config(cross_attention_dim: int) -> dict:
    return {
        "sample_size": IMAGE_SIZE // 4,
        "in_channels": 4, "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "block_out_channels": [64, 128, 128],
        "layers_per_block": 1,
        "attention_head_dim": 8,
        "cross_attention_dim": cross_attention_dim,
        "norm_num_groups": 32,
    }


def scheduler_config() -> dict:
    """SD 2.1-base's DDIM schedule (ε-prediction, scaled-linear betas)."""
    return {
        "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "clip_sample": False,
        "set_alpha_to_one": False, "steps_offset": 1,
    }
