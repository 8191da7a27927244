"""One loader per model family, serving the toy profile and real profiles alike.

Real models load from the local Hugging Face cache only (`local_files_only`);
a missing one raises `ModelMissingError` naming the model id and the command
that fetches it. Loaded models are cached per process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from PIL import Image

from models.profiles import ClipSource, Profile


class ModelMissingError(RuntimeError):
    """A model named by a profile is not available locally."""


def hub_cache_dir() -> str:
    """The local Hugging Face hub cache the real profiles load from."""
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")


def _missing(model_id: str, what: str, cause: Exception | None = None) -> ModelMissingError:
    if str(model_id).startswith(("local-dir:", "/")) or Path(str(model_id)).exists():
        return ModelMissingError(
            f"{what} not found at {model_id}. The toy models are committed with the repo; "
            f"rebuild them with `python -m models.toy.train`." + (f" ({cause})" if cause else ""))
    cache_dir = hub_cache_dir()
    return ModelMissingError(
        f"{what} '{model_id}' is not in the Hugging Face cache ({cache_dir}). On a machine with network run "
        f"`hf download {model_id}` and point HF_HOME at that cache."
        + (f" ({type(cause).__name__}: {cause})" if cause else ""))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    return torch.float16 if device == "cuda" else torch.float32


def pil_rgb(images: list[Image.Image]) -> list[Image.Image]:
    return [im if im.mode == "RGB" else im.convert("RGB") for im in images]


# ----------------------------------------------------------------------------- open_clip


@dataclass
class JointClip:
    """An open_clip CLIP with its tokenizer and image transform.

    For the *joint* CLIP its `token_embedding` rows are the diffusion text
    encoder's input space (SD 2.x shares OpenCLIP ViT-H's table)."""

    model: torch.nn.Module
    tokenizer: Callable
    preprocess: Callable
    model_id: str
    sot_id: int
    eot_id: int
    pad_id: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        return self.model.positional_embedding.shape[0]

    @property
    def token_table(self) -> torch.Tensor:
        return self.model.token_embedding.weight

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.device)

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.preprocess(im) for im in pil_rgb(images)]).to(self.device)

    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        return self.model.encode_image(self.pixels(images)).float()

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenize(texts)).float()

    def encode_token_embeddings(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The text tower (EOT-pooled, projected) on input embeddings instead of
        ids; `ids` only says where EOT is. Differentiable w.r.t. `embeds`."""
        import open_clip

        m = self.model
        x = embeds + m.positional_embedding.to(embeds.dtype)
        x = m.transformer(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)
        x = open_clip.transformer.text_global_pool(x, ids, m.text_pool_type, eos_token_id=self.eot_id)
        return self.project_text(x)

    def project_text(self, x: torch.Tensor) -> torch.Tensor:
        """The text tower's projection into the joint space (a matrix or a Linear layer in open_clip)."""
        proj = self.model.text_projection
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj.to(x.dtype)


def _open_clip_weights_cached(source: ClipSource) -> bool:
    """Whether an open_clip pretrained tag's weights are in the local Hugging Face cache (no network)."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.pretrained.get_pretrained_cfg(source.name, source.pretrained)
    if not cfg.get("hf_hub"):
        return True  # URL-hosted weights: open_clip's own cache decides
    repo, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" or "org/repo/file"
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, name), str) for name in names)


@cache
def load_clip(source: ClipSource, device: str | None = None) -> JointClip:
    import open_clip

    device = device or default_device()
    local = source.name.startswith("local-dir:")
    if local and not (Path(source.name.removeprefix("local-dir:")) / "open_clip_config.json").exists():
        raise _missing(source.name, "open_clip model")
    import huggingface_hub.constants as hub_constants

    old, old_constant = os.environ.get("HF_HUB_OFFLINE"), hub_constants.HF_HUB_OFFLINE
    # Never download at run time. The hub reads the variable once, at import: set both.
    os.environ["HF_HUB_OFFLINE"], hub_constants.HF_HUB_OFFLINE = "1", True
    try:
        if source.pretrained and not local and not _open_clip_weights_cached(source):
            # Checked first: building ViT-H only to learn its weights are missing takes a minute.
            raise FileNotFoundError(f"{source.model_id} weights are not in the local cache")
        model, _, preprocess = open_clip.create_model_and_transforms(source.name, pretrained=source.pretrained)
    except Exception as exc:  # open_clip wraps hub errors in RuntimeError
        if local:
            raise
        raise _missing(source.hub_id or source.model_id, "open_clip model", exc) from exc
    finally:
        hub_constants.HF_HUB_OFFLINE = old_constant
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
    if local:
        folder = Path(source.name.removeprefix("local-dir:"))
        tokenizer = open_clip.tokenizer.SimpleTokenizer(
            bpe_path=str(folder / "bpe_simple_vocab.txt.gz"), context_length=model.positional_embedding.shape[0])
    else:
        tokenizer = open_clip.get_tokenizer(source.name)
    model = model.to(device).eval().requires_grad_(False)
    return JointClip(model=model, tokenizer=tokenizer, preprocess=preprocess, model_id=source.model_id,
                     sot_id=tokenizer.sot_token_id, eot_id=tokenizer.eot_token_id)


# ----------------------------------------------------------------------------- evaluation encoders


@dataclass
class ImageEncoder:
    encode: Callable[[list[Image.Image]], torch.Tensor]
    model_id: str


@dataclass
class TextEncoder:
    encode: Callable[[list[str]], torch.Tensor]
    model_id: str


IMAGE_ENCODER_KINDS = ("clip", "dinov2")


@cache
def load_image_encoder(profile: Profile, kind: str = "clip") -> ImageEncoder:
    """Evaluation image encoder: 'clip' (the profile's eval CLIP) or 'dinov2' (CLS token)."""
    if kind == "clip":
        clip = load_clip(profile.eval_clip)
        return ImageEncoder(clip.encode_images, clip.model_id)
    if kind == "dinov2":
        if profile.dinov2 is None:
            raise ValueError(f"profile {profile.name!r} has no DINOv2 encoder; use kind='clip'")
        return _load_dinov2(profile.dinov2)
    raise ValueError(f"unknown image encoder kind {kind!r} (clip | dinov2)")


@cache
def load_text_encoder(profile: Profile) -> TextEncoder:
    clip = load_clip(profile.eval_clip)
    return TextEncoder(clip.encode_texts, clip.model_id)


def _load_dinov2(model_id: str, device: str | None = None) -> ImageEncoder:
    from transformers import AutoImageProcessor, AutoModel

    device = device or default_device()
    try:
        processor = AutoImageProcessor.from_pretrained(model_id, local_files_only=True)
        model = AutoModel.from_pretrained(model_id, local_files_only=True).to(device).eval()
    except OSError as exc:
        raise _missing(model_id, "DINOv2 model", exc) from exc

    @torch.no_grad()
    def encode(images: list[Image.Image]) -> torch.Tensor:
        inputs = processor(images=pil_rgb(images), return_tensors="pt").to(device)
        return model(**inputs).last_hidden_state[:, 0].float()

    return ImageEncoder(encode, model_id)


# ----------------------------------------------------------------------------- diffusion pipelines


def _load_diffusers(cls, source: str, device: str, what: str, toy: bool):
    """A diffusers pipeline from a local folder or the Hugging Face cache (never the network), frozen, in
    eval mode, on `device`, progress bars off; a missing one raises `ModelMissingError` naming it."""
    import diffusers

    is_sd = cls in (diffusers.StableDiffusionPipeline, diffusers.StableDiffusionInstructPix2PixPipeline,
                    diffusers.StableDiffusionInpaintPipeline)
    kwargs = {"safety_checker": None, "requires_safety_checker": False} if is_sd else {}
    if toy and not (Path(source) / "model_index.json").exists():
        raise _missing(source, f"toy {what}")
    from importlib.util import find_spec

    import transformers

    # loading bars off (the CLI's own bars and logs report progress); without accelerate, say so
    # to diffusers rather than have it warn on every load
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    kwargs["low_cpu_mem_usage"] = find_spec("accelerate") is not None
    try:
        pipe = cls.from_pretrained(source, dtype=default_dtype(device), local_files_only=True, **kwargs)
    except OSError as exc:
        raise _missing(source, what, exc) from exc
    pipe.set_progress_bar_config(disable=True)
    if pipe.vae.dtype == torch.float16 and pipe.vae.config.get("force_upcast", False):
        pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16; its pipeline upcasts it the same way
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.requires_grad_(False).eval()
    return pipe.to(device)


@cache
def load_pipeline(profile: Profile, device: str | None = None):
    """The profile's diffusers pipeline with a DDIM scheduler, frozen, in eval mode."""
    import diffusers

    pipe = _load_diffusers(getattr(diffusers, profile.pipeline_class), profile.diffusion,
                           device or default_device(), "diffusion pipeline", profile.is_toy)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


@cache
def load_editor(profile: Profile, device: str | None = None):
    """The profile's instruction editor: a `StableDiffusionInstructPix2PixPipeline` (8-channel UNet) with
    the scheduler it ships (Euler ancestral for `timbrooks/instruct-pix2pix` and the toy editor)."""
    import diffusers

    if profile.editor is None:
        raise ValueError(f"profile {profile.name!r} has no instruction editor (InstructPix2Pix); "
                         "use an SD 1.x/2.x profile or the toy one")
    pipe = _load_diffusers(diffusers.StableDiffusionInstructPix2PixPipeline, profile.editor,
                           device or default_device(), "instruction editor (InstructPix2Pix)", profile.is_toy)
    if pipe.unet.config.in_channels != 2 * pipe.vae.config.latent_channels:
        raise ValueError(f"{profile.editor} is not an InstructPix2Pix model: its UNet takes "
                         f"{pipe.unet.config.in_channels} channels, not latent ⊕ image latent "
                         f"({2 * pipe.vae.config.latent_channels})")
    return pipe


@cache
def load_inpainter(profile: Profile, device: str | None = None):
    """The profile's inpainter (Analogist's): a `StableDiffusionInpaintPipeline` whose UNet takes the
    noisy latent ⊕ the mask ⊕ the masked image's latent (9 channels for 4 latent channels), with a DDIM
    scheduler (the official Analogist code swaps it in; SD inpainting ships PNDM)."""
    import diffusers

    if profile.inpainter is None:
        raise ValueError(f"profile {profile.name!r} has no inpainter (Analogist); use the toy profile or an SD one")
    pipe = _load_diffusers(diffusers.StableDiffusionInpaintPipeline, profile.inpainter, device or default_device(),
                           "inpainter (SD inpainting)", profile.is_toy)
    if pipe.unet.config.in_channels != 2 * pipe.vae.config.latent_channels + 1:
        raise ValueError(f"{profile.inpainter} is not an inpainting model: its UNet takes "
                         f"{pipe.unet.config.in_channels} channels, not latent ⊕ mask ⊕ masked latent "
                         f"({2 * pipe.vae.config.latent_channels + 1})")
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


# ----------------------------------------------------------------------------- captioners


@dataclass
class Captioner:
    caption: Callable[[list[Image.Image]], list[str]]
    model_id: str


@cache
def load_captioner(profile: Profile, vocabulary: tuple[str, ...] | None = None) -> Captioner:
    """BLIP-2 for real profiles; retrieval over a caption vocabulary with the joint CLIP
    for the toy profile (or for any profile given a vocabulary)."""
    if profile.captioner == "retrieval" or vocabulary is not None:
        if vocabulary is None:
            from models.toy.world import all_captions

            vocabulary = tuple(all_captions())
        return retrieval_captioner(load_clip(profile.joint_clip), vocabulary)
    return _load_blip2(profile.captioner)


def retrieval_captioner(clip: JointClip, vocabulary: tuple[str, ...]) -> Captioner:
    text = torch.nn.functional.normalize(clip.encode_texts(list(vocabulary)), dim=-1)

    def caption(images: list[Image.Image]) -> list[str]:
        img = torch.nn.functional.normalize(clip.encode_images(images), dim=-1)
        return [vocabulary[i] for i in (img @ text.T).argmax(dim=1).tolist()]

    return Captioner(caption, f"retrieval[{clip.model_id}, {len(vocabulary)} captions]")


def _load_blip2(model_id: str, device: str | None = None) -> Captioner:
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    device = device or default_device()
    try:
        processor = Blip2Processor.from_pretrained(model_id, local_files_only=True)
        model = Blip2ForConditionalGeneration.from_pretrained(
            model_id, local_files_only=True, dtype=default_dtype(device)).to(device).eval()
    except OSError as exc:
        raise _missing(model_id, "BLIP-2 captioner", exc) from exc

    @torch.no_grad()
    def caption(images: list[Image.Image]) -> list[str]:
        inputs = processor(images=pil_rgb(images), return_tensors="pt").to(device, model.dtype)
        out = model.generate(**inputs, max_new_tokens=30)
        return [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]

    return Captioner(caption, model_id)


# ----------------------------------------------------------------------------- toy judge


@dataclass
class Judge:
    """Reads the toy attributes off any image with the separately trained judge CLIP."""

    clip: JointClip
    captions: tuple[str, ...]
    text_features: torch.Tensor

    def read(self, images: list[Image.Image]) -> list[dict[str, str]]:
        from models.toy.world import parse_caption

        img = torch.nn.functional.normalize(self.clip.encode_images(images), dim=-1)
        best = (img @ self.text_features.T).argmax(dim=1).tolist()
        return [parse_caption(self.captions[i]).as_dict() for i in best]


@cache
def load_judge(profile: Profile) -> Judge:
    from models.toy.world import all_captions

    if profile.judge is None:
        raise ValueError(f"profile {profile.name!r} has no judge (only the toy world has ground-truth attributes)")
    clip = load_clip(profile.judge)
    captions = tuple(all_captions())
    return Judge(clip, captions, torch.nn.functional.normalize(clip.encode_texts(list(captions)), dim=-1))


# ------------------------------------------------------------------- VLM (pairwise judge, Analogist's prompter)


@dataclass
class VLM:
    """An image-text-to-text model with its processor: `ask(images, text)` is one user turn (the images,
    then the text) through the model's chat template, greedy-decoded."""

    model_id: str
    processor: object
    model: torch.nn.Module

    @torch.no_grad()
    def ask(self, images: list[Image.Image], text: str, max_new_tokens: int) -> str:
        images = pil_rgb(images)
        messages = [{"role": "user", "content": [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[prompt], images=images, return_tensors="pt").to(self.model.device)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()


@cache
def _vlm(model_id: str, device: str) -> VLM:
    """One load per (model, device), whoever asks for it (the judge and the prompter share it)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_id, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(model_id, local_files_only=True, dtype=default_dtype(device))
    return VLM(model_id, processor, model.to(device).eval())


def load_vlm(model_id: str, device: str | None = None, what: str = "the VLM") -> VLM:
    """An image-text-to-text model (Qwen2-VL, Qwen2.5-VL, …) with its processor from a local folder or the
    Hugging Face cache, never the network, in eval mode; a missing one raises `ModelMissingError` naming
    it as `what`."""
    try:
        return _vlm(model_id, device or default_device())
    except OSError as exc:
        raise _missing(model_id, what, exc) from None


def load_prompter(profile: Profile, device: str | None = None) -> VLM | None:
    """Analogist's prompter: the profile's VLM, or None where the profile has none (the toy world, whose
    stand-in is ops.analogist.prompt_for's caption difference)."""
    if profile.prompter is None:
        return None
    return load_vlm(profile.prompter, device, "Analogist's prompter (a VLM)")


# ----------------------------------------------------------------------------- what the weights are


def source_version(source: str) -> str:
    """What a model source currently holds: a local folder (the toy models, `local-dir:` CLIPs) by the
    SHA-256 of its files' names and bytes; a hub id by the snapshot the local cache's `refs/main` points
    to; anything else (an open_clip pretrained tag, the toy's retrieval captioner) by its name, which
    fixes its weights. Cache keys carry it, so retrained or updated weights never meet a stale result."""
    path = Path(source.removeprefix("local-dir:"))
    if path.is_dir():
        return f"folder#{_folder_digest(str(path.resolve()))}"  # by content: a moved checkout keeps its caches
    ref = Path(hub_cache_dir()) / f"models--{source.replace('/', '--')}" / "refs" / "main"
    return f"{source}@{ref.read_text().strip()}" if ref.is_file() else source


@cache
def _folder_digest(path: str) -> str:  # once per process: the committed toy world hashes in ~0.1 s
    import hashlib

    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def weights_key(profile: Profile) -> str:
    """The profile's name and the versions of every model a method reads (not the judges and evaluation
    encoders, which score B′ and never make it), as one string for cache keys."""
    sources = [profile.diffusion, profile.joint_clip.model_id, profile.captioner, profile.editor,
               profile.editor_clip.model_id if profile.editor_clip else None, profile.inpainter, profile.prompter]
    return "|".join([profile.name] + [source_version(s) for s in sources if s])
