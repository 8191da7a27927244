"""Model profiles: every model a run needs, with its source and the method
defaults that depend on the profile.

`toy` is committed and the default. Real profiles name Hugging Face hub ids and
load from the local Hugging Face cache only (no download at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TOY_WEIGHTS = Path(__file__).parent / "toy" / "weights"


@dataclass(frozen=True)
class ClipSource:
    """An open_clip model: a built-in architecture + pretrained tag, or a `local-dir:` folder."""

    name: str
    pretrained: str | None = None
    hub_id: str | None = None  # where the pretrained tag's weights live on the hub, for error messages

    @property
    def model_id(self) -> str:
        return f"{self.name}/{self.pretrained}" if self.pretrained else self.name


@dataclass(frozen=True)
class Profile:
    name: str
    diffusion: str  # diffusers pipeline: hub id or local folder
    pipeline_class: str  # "StableDiffusionPipeline" | "StableDiffusionXLPipeline"
    joint_clip: ClipSource  # shares its token table with the diffusion text encoder
    captioner: str  # "retrieval" (over `caption_vocabulary`) or a BLIP-2 hub id
    eval_clip: ClipSource  # evaluation image/text encoder (never used by a method)
    dinov2: str | None = None
    judge: ClipSource | None = None  # toy only: reads attributes off images
    resolution: int = 512
    # Optimisation steps (paper values by default; the toy profile uses fewer so CI stays fast).
    pez_steps: int = 3000
    diff_steps: int = 3000

    @property
    def is_toy(self) -> bool:
        return self.name == "toy"


VIT_H = ClipSource("ViT-H-14", "laion2b_s32b_b79k", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
VIT_L = ClipSource("ViT-L-14", "openai", "timm/vit_large_patch14_clip_224.openai")
BIGG = ClipSource("ViT-bigG-14", "laion2b_s39b_b160k", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k")

PROFILES: dict[str, Profile] = {
    "toy": Profile(
        name="toy",
        diffusion=str(TOY_WEIGHTS / "sd"),
        pipeline_class="StableDiffusionPipeline",
        joint_clip=ClipSource(f"local-dir:{TOY_WEIGHTS / 'joint_clip'}"),
        captioner="retrieval",
        eval_clip=ClipSource(f"local-dir:{TOY_WEIGHTS / 'judge_clip'}"),
        judge=ClipSource(f"local-dir:{TOY_WEIGHTS / 'judge_clip'}"),
        resolution=32,
        # Fewer optimisation steps than the paper so CI stays fast (see models/toy/MODEL_CARD.md).
        pez_steps=300,
        diff_steps=300,
    ),
    "sd21-base": Profile(
        name="sd21-base",
        diffusion="stabilityai/stable-diffusion-2-1-base",
        pipeline_class="StableDiffusionPipeline",
        joint_clip=VIT_H,
        captioner="Salesforce/blip2-opt-2.7b",
        eval_clip=VIT_H,
        dinov2="facebook/dinov2-base",
        resolution=512,
    ),
    "sd21": Profile(
        name="sd21",
        diffusion="stabilityai/stable-diffusion-2-1",
        pipeline_class="StableDiffusionPipeline",
        joint_clip=VIT_H,
        captioner="Salesforce/blip2-opt-2.7b",
        eval_clip=VIT_H,
        dinov2="facebook/dinov2-base",
        resolution=768,
    ),
    "sd15": Profile(
        name="sd15",
        diffusion="stable-diffusion-v1-5/stable-diffusion-v1-5",
        pipeline_class="StableDiffusionPipeline",
        joint_clip=VIT_L,
        captioner="Salesforce/blip2-opt-2.7b",
        eval_clip=VIT_L,
        dinov2="facebook/dinov2-base",
        resolution=512,
    ),
    "sdxl": Profile(
        name="sdxl",
        diffusion="stabilityai/stable-diffusion-xl-base-1.0",
        pipeline_class="StableDiffusionXLPipeline",
        joint_clip=BIGG,
        captioner="Salesforce/blip2-opt-2.7b",
        eval_clip=VIT_L,
        dinov2="facebook/dinov2-base",
        resolution=1024,
    ),
}


def get_profile(name: str = "toy") -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
