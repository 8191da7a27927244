"""Rebuild every toy model from the generator: `python -m models.toy.train`.

Order: joint CLIP → judge CLIP → VAE → UNet (the UNet is conditioned on the
SD-2-style text encoder cut from the joint CLIP, which stays frozen, exactly as
SD 2.1 keeps OpenCLIP ViT-H frozen) → decoder stages → the textured world's VAE and
UNet (`weights/textured`, the same recipe on `render_textured`, for Differential
Diffusion's reliability score; no decoder stages). Experimental, not in the
default order: `--only tiny_vae` distils a local AutoencoderTiny into the VAE's
latent space (MODEL_CARD "Locality"; `python -m benchmarks.research.vae_locality` checks it), and `--only corrected
--unet-out DIR` fine-tunes the plain UNet with captions that say an attribute twice, the last one
right (MODEL_CARD "Corrected captions": not yet good enough to ship).
Each model is written as soon as it is
trained; the UNet also writes its EMA weights every `--save-every` steps.
Times and figures go to the model cards (models/toy/weights/*/MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    DDIMScheduler,
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from models.convert import open_clip_text_to_hf
from models.toy import architecture as arch
from models.toy import bpe
from models.toy.world import (
    ATTRIBUTE_NAMES,
    IMAGE_SIZE,
    Scene,
    all_scenes,
    caption,
    corrected_caption,
    edit_instruction,
    edits,
    render,
    render_textured,
    training_scenes,
    varied_caption,
)

WEIGHTS = Path(__file__).parents[1] / "weights"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def render_pool(scenes: list[Scene], per_scene: int, seed: int, draw=render) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [-1, 1] (N, 3, 32, 32) and the scene index of each; `draw(scene, seed)` renders
    (the world's `render`; an experiment may pass another renderer of the same scenes)."""
    rng = random.Random(seed)
    images, index = [], []
    for i, scene in enumerate(scenes):
        for _ in range(per_scene):
            images.append(np.asarray(draw(scene, rng.randrange(2**31)), dtype=np.uint8))
            index.append(i)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, torch.tensor(index)


def cut_masks(n: int, side: int, lo: int, hi: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 1, side, side) masks: 1 from a random cut in [lo, hi) on, by column (half) or row."""
    cut = torch.randint(lo, hi, (n,), generator=generator)
    mask = (torch.arange(side)[None, :] >= cut[:, None]).float()[:, None, None, :].expand(n, 1, side, side)
    rows = torch.rand(n, generator=generator) < 0.5
    return torch.where(rows[:, None, None, None], mask.transpose(-1, -2), mask)


def composites(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` images made of two renders cut at a random column (or row): scenes whose halves
    differ, so the VAE and the UNet's unconditional model learn that content can change
    across an image (what a change map or an inpainting mask asks of them)."""
    g = torch.Generator().manual_seed(seed)
    first, second = (images[torch.randint(len(images), (n,), generator=g)] for _ in range(2))
    mask = cut_masks(n, images.shape[-1], 6, images.shape[-1] - 5, g)
    return first * (1 - mask) + second * mask


def vae_images(seed: int, draw=render) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE's training pool: renders of every training scene, and those plus a quarter of
    composites (1 in 4 images)."""
    scenes, _ = render_pool(training_scenes(), 48, seed, draw)
    return scenes, torch.cat([scenes, composites(scenes, len(scenes) // 3, seed)])


def mixed_captions(scenes: list[Scene], rng: random.Random, drop: float) -> list[str]:
    """Half canonical, half `varied_caption` (any order; attributes dropped with `drop`)."""
    return [caption(s) if rng.random() < 0.5 else varied_caption(s, rng, drop) for s in scenes]


def cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_clip(scenes: list[Scene], steps: int, seed: int, tokenizer, out: Path, name: str) -> open_clip.CLIP:
    """Contrastive training; each batch holds every scene once (no false negatives), each
    caption in canonical or free order (`mixed_captions`, nothing dropped)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = open_clip.model.CLIP(**arch.clip_model_cfg(bpe.vocab_size()))
    images, index = render_pool(scenes, 48, seed)
    per_scene = [torch.nonzero(index == i).flatten() for i in range(len(scenes))]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 50))
    labels = torch.arange(len(scenes))
    start = time.time()
    for step in range(steps):
        pick = torch.stack([rows[torch.randint(len(rows), (1,))] for rows in per_scene]).flatten()
        img_f = model.encode_image(images[pick], normalize=True)
        txt_f = model.encode_text(tokenizer(mixed_captions(scenes, rng, drop=0.0)), normalize=True)
        logits = model.logit_scale.exp() * img_f @ txt_f.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == steps - 1:
            acc = (logits.argmax(1) == labels).float().mean().item()
            log(f"{name} step {step} loss {loss.item():.4f} acc {acc:.3f}")
    minutes = (time.time() - start) / 60
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()},
              out / "open_clip_model.safetensors")
    tok_files = bpe.write_tokenizer_files(out)
    (out / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": {**arch.clip_model_cfg(bpe.vocab_size()),
                      "text_cfg": {**arch.clip_model_cfg(bpe.vocab_size())["text_cfg"],
                                   "tokenizer_kwargs": {"bpe_path": tok_files["bpe"].name}}},
        "preprocess_cfg": arch.CLIP_PREPROCESS_CFG,
    }, indent=2))
    (out / "train_stats.json").write_text(json.dumps({"steps": steps, "minutes": round(minutes, 2),
                                                      "final_loss": round(loss.item(), 4), "scenes": len(scenes)}))
    log(f"{name} saved to {out} ({minutes:.1f} min)")
    return model


def pixel_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The toy VAEs' reconstruction loss: MSE + ½·L1."""
    return F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)


def train_vae(steps: int, seed: int, out: Path, draw=render) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(**arch.vae_config())
    scenes, images = vae_images(seed, draw)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 50))
    start = time.time()
    for step in range(steps):
        x = images[torch.randint(len(images), (64,))]
        dist = vae.encode(x).latent_dist
        recon = vae.decode(dist.sample()).sample
        loss = pixel_loss(recon, x) + 1e-6 * dist.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step} loss {loss.item():.5f}")
    vae.eval()
    with torch.no_grad():
        z = torch.cat([vae.encode(scenes[i:i + 512]).latent_dist.sample() for i in range(0, len(scenes), 512)])
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    minutes = (time.time() - start) / 60
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_stats.json").write_text(json.dumps({"steps": steps, "minutes": round(minutes, 2),
                                                      "final_loss": round(loss.item(), 5),
                                                      "scaling_factor": vae.config.scaling_factor}))
    log(f"vae trained ({minutes:.1f} min), scaling factor {vae.config.scaling_factor:.4f}")
    return vae


@torch.no_grad()
def posterior(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE posterior's mean and std for every image (unscaled), encoded 512 at a time."""
    dists = [vae.encode(images[i:i + 512]).latent_dist for i in range(0, len(images), 512)]
    return torch.cat([d.mean for d in dists]), torch.cat([d.std for d in dists])


def splice_pairs(z: torch.Tensor, x: torch.Tensor, half: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `half` of a batch spliced with shuffled partners at a random latent-cell boundary
    (`cut_masks`): the latents cell by cell, the images at the same cut in pixels — a decoder
    trained on them decodes a region from its own cells."""
    partner = torch.randperm(len(x))[:half]
    cells = cut_masks(half, z.shape[-1], 1, z.shape[-1], g)
    pixels = F.interpolate(cells, size=x.shape[-2:], mode="nearest")
    return (torch.cat([z[:half] * (1 - cells) + z[partner] * cells, z[half:]]),
            torch.cat([x[:half] * (1 - pixels) + x[partner] * pixels, x[half:]]))


def finetune_decoder(vae: AutoencoderKL, steps: int, seed: int, splice: bool) -> AutoencoderKL:
    """Sharpen the decoder with the encoder frozen (the latents, and so the UNet trained on
    them, stay exactly as they are). With `splice`, half of each batch are latents of two
    images spliced at a cell boundary, to decode as the same splice of the two images — an
    attempt at a **local** decoder (a region's pixels from its own cells), which keeping part
    of a latent (change maps) needs; see MODEL_CARD for how far it got."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    _, images = vae_images(seed)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = images[torch.randint(len(images), (64,))]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        return splice_pairs(z, x, len(x) // 2 if splice else 0, g)

    return tune_decoder(vae, steps, batch, "decoder", every=100)


def tune_decoder(vae: AutoencoderKL, steps: int, batch, label: str, every: int) -> AutoencoderKL:
    """The decoder stages' loop: the decoder (and post-quant conv) alone trained on `batch(step)` →
    (latents, images) with the VAEs' pixel loss, AdamW 3e-4 on a cosine schedule; the encoder frozen."""
    vae.requires_grad_(False)
    decoder_params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in decoder_params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(decoder_params, lr=3e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 20))
    vae.train()
    start = time.time()
    for step in range(steps):
        z, x = batch(step)
        loss = pixel_loss(vae.decode(z).sample, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % every == 0 or step == steps - 1:
            log(f"{label} step {step} loss {loss.item():.5f} ({(time.time() - start) / 60:.1f} min)")
    return vae.eval().requires_grad_(False)


def distil_tiny_vae(teacher: AutoencoderKL, steps: int, seed: int, checkpoint=None) -> AutoencoderTiny:
    """Experimental (`--only tiny_vae`, not shipped; MODEL_CARD "Locality"). TAESD's recipe at
    toy size: a convolution-only autoencoder trained into the KL VAE's scaled latent space —
    the space the UNet was trained in — so it could replace the KL VAE in the pipeline with
    nothing else retrained. Encoder: regress E_KL(x)·s. Decoder: decode latents
    drawn from the KL posterior; in half of each batch two images' latents are spliced at a
    cell boundary and decode to the same splice in pixels, so a region decodes from its own
    cells (a change map's kept region stays kept). `checkpoint(model, step, minutes)` is
    called every 400 steps."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    _, images = vae_images(seed)
    sf = teacher.config.scaling_factor
    mean, std = (t * sf for t in posterior(teacher, images))
    tiny = AutoencoderTiny(**arch.tiny_vae_config())
    opt = torch.optim.AdamW(tiny.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 50))
    start = time.time()
    for step in range(steps):
        pick = torch.randint(len(images), (64,))
        x, target = images[pick], mean[pick]
        encoder_loss = F.mse_loss(tiny.encode(x).latents, target)
        z = target + std[pick] * torch.randn_like(target)
        z, x = splice_pairs(z, x, len(x) // 2, g)
        recon = tiny.decode(z).sample
        decoder_loss = pixel_loss(recon, x)
        loss = encoder_loss + decoder_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"tiny vae step {step} encoder {encoder_loss.item():.5f} decoder {decoder_loss.item():.5f} "
                f"({(time.time() - start) / 60:.1f} min)")
        if checkpoint is not None and ((step + 1) % 400 == 0 or step == steps - 1):
            checkpoint(tiny.eval(), step + 1, (time.time() - start) / 60)
            tiny.train()
    return tiny.eval().requires_grad_(False)


def save_pipeline(unet, vae, text_encoder, tokenizer, out: Path, cls=StableDiffusionPipeline,
                  scheduler=None) -> None:
    """A toy pipeline of class `cls` (text-to-image, instruction editor, inpainter), its scheduler DDIM on
    the toy schedule unless given, saved in float16 (half the bytes; loaders up-cast to float32 on CPU);
    then the components it shares with weights/sd become links (`share_with_sd`). Links a former save
    left in `out` are removed first: saving through them would write into weights/sd itself."""
    half = lambda m: copy.deepcopy(m).to(torch.float16)  # noqa: E731
    for link in (out.iterdir() if out.is_dir() else ()):
        if link.is_symlink():
            link.unlink()
    cls(vae=half(vae), text_encoder=half(text_encoder), tokenizer=tokenizer, unet=half(unet),
        scheduler=scheduler or DDIMScheduler(**arch.scheduler_config()), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False).save_pretrained(out, safe_serialization=True)
    drop_local_paths(out)
    share_with_sd(out)


def save_half(model, out: Path) -> None:
    """A diffusers model saved in float16 (the loaders up-cast on CPU), its config without a local path."""
    copy.deepcopy(model).to(torch.float16).save_pretrained(out, safe_serialization=True)
    drop_local_paths(out)


def drop_local_paths(out: Path) -> None:
    """The configs under `out` lose `_name_or_path`, which diffusers writes for a model loaded from a
    folder: the committed toy world names no path of the machine that trained it."""
    for config in out.rglob("*config.json"):
        settings = json.loads(config.read_text())
        if settings.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def share_with_sd(out: Path, names: tuple[str, ...] = ("vae", "text_encoder", "tokenizer")) -> None:
    """The components of a pipeline saved in `out` that are the text-to-image pipeline's (weights/sd)
    become relative links to it, so the committed toy world stores each file once (the editor and the
    inpainter reuse its VAE, text encoder and tokenizer unchanged). The same: every weight and
    vocabulary file byte for byte, and every setting the two configs share, the savers' versions aside."""
    sd = WEIGHTS / "sd"
    if out.resolve() == sd.resolve():
        return
    for name in names:
        mine, theirs = out / name, sd / name
        if mine.is_symlink() or not (mine.is_dir() and theirs.is_dir()):
            continue
        if all(_same_file(f, theirs / f.name) for f in mine.iterdir()):
            shutil.rmtree(mine)
            mine.symlink_to(os.path.relpath(theirs, out), target_is_directory=True)


def _same_file(mine: Path, theirs: Path) -> bool:
    if not theirs.is_file():
        return False
    if mine.name.endswith("config.json"):
        a, b = (json.loads(p.read_text()) for p in (mine, theirs))
        versions = {"_diffusers_version", "transformers_version", "_name_or_path"}
        return all(a[k] == b[k] for k in (a.keys() & b.keys()) - versions)
    return mine.read_bytes() == theirs.read_bytes()


def optimise(loss: torch.Tensor, model: torch.nn.Module, opt, sched, ema: torch.nn.Module, step: int) -> None:
    """One step of the toy UNets' optimiser: gradients clipped at norm 1, the schedule, then the EMA
    (decay warming up to 0.999)."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    decay = min(0.999, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters()):
            pe.lerp_(p, 1 - decay)


def noise_scheduler() -> DDPMScheduler:
    """The training-time noise schedule of every toy UNet (the DDIM schedule's betas)."""
    return DDPMScheduler(**{k: v for k, v in arch.scheduler_config().items() if k != "set_alpha_to_one"})


def train_unet(clip_model, vae: AutoencoderKL, steps: int, seed: int, out: Path, save_every: int,
               batch: int = 128, draw=render, corrected: int = 0, init: Path | None = None,
               lr: float = 6e-4) -> None:
    """The UNet on the frozen joint-CLIP text encoder, EMA saved every `save_every` steps. `init`: start
    from a saved pipeline's UNet (a fine-tuning stage) instead of random weights."""
    torch.manual_seed(seed)
    text_encoder = open_clip_text_to_hf(clip_model, drop_last_layers=1)
    text_encoder.requires_grad_(False)
    tok_dir = Path(tempfile.mkdtemp())
    bpe.write_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, pad_token="!", model_max_length=arch.CONTEXT_LENGTH)
    scenes = training_scenes()
    rng = random.Random(seed)
    # caption rows per scene: 12 of `mixed_captions` (a quarter of the attributes dropped), then
    # `corrected` rows of `corrected_caption` (an attribute said twice, the last one right)
    plain = 12
    variants = plain + corrected
    prompts = [c for _ in range(plain) for c in mixed_captions(scenes, rng, drop=0.25)]
    prompts += [corrected_caption(s, rng, drop=0.25) for _ in range(corrected) for s in scenes] + [""]
    ids = tokenizer(prompts, padding="max_length", max_length=arch.CONTEXT_LENGTH, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():  # (variants·S + 1, L, D); row v·S + s is scene s, the last row the empty prompt
        cond = torch.cat([text_encoder(input_ids=ids[i:i + 512]).last_hidden_state for i in range(0, len(ids), 512)])
    empty_row = len(prompts) - 1
    images, index = render_pool(scenes, 48, seed, draw)
    n_scene_images = len(images)
    images = torch.cat([images, composites(images, len(images) // 8, seed)])  # composites: empty prompt only
    mean, std = posterior(vae, images)
    sf = vae.config.scaling_factor
    unet = (UNet2DConditionModel.from_pretrained(init / "unet", dtype=torch.float32) if init else
            UNet2DConditionModel(**arch.unet_config(text_encoder.config.hidden_size)))
    ema = UNet2DConditionModel(**arch.unet_config(text_encoder.config.hidden_size))
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    noise_sched = noise_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 100))
    start = time.time()
    for step in range(steps):
        pick = torch.randint(len(images), (batch,))
        z0 = (mean[pick] + std[pick] * torch.randn_like(std[pick])) * sf
        composite = pick >= n_scene_images
        text_row = index[pick.clamp(max=n_scene_images - 1)] + len(scenes) * torch.randint(variants, (batch,))
        text_row[(torch.rand(batch) < 0.1) | composite] = empty_row  # 10 % unconditional, for CFG
        noise = torch.randn_like(z0)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,))
        zt = noise_sched.add_noise(z0, noise, t)
        loss = F.mse_loss(unet(zt, t, cond[text_row]).sample, noise)
        optimise(loss, unet, opt, sched, ema, step)
        if step % 50 == 0:
            log(f"unet step {step} loss {loss.item():.4f} ({(time.time() - start) / 60:.1f} min)")
        if (step + 1) % save_every == 0 or step == steps - 1:
            save_pipeline(ema, vae, text_encoder, tokenizer, out)
            (out / "train_stats.json").write_text(json.dumps({
                "steps_done": step + 1, "steps": steps, "batch": batch,
                "minutes": round((time.time() - start) / 60, 2), "loss": round(loss.item(), 4)}))
            log(f"unet checkpoint at step {step + 1} → {out}")


def widen_conv_in(unet: UNet2DConditionModel, in_channels: int) -> UNet2DConditionModel:
    """The UNet with `in_channels` inputs: its first convolution keeps the trained weights for the first
    channels, zeros for the new ones (InstructPix2Pix's initialisation from a text-to-image UNet, so
    training starts from the text-to-image model exactly)."""
    config = {**unet.config, "in_channels": in_channels}
    wide = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    weight = state["conv_in.weight"]
    state["conv_in.weight"] = torch.cat(
        [weight, weight.new_zeros(weight.shape[0], in_channels - weight.shape[1], *weight.shape[2:])], dim=1)
    wide.load_state_dict(state)
    return wide


def edit_pool(per_edit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """The toy editor's training pairs: every one-attribute edit between two training scenes
    (`world.edits`), each rendered `per_edit` times with one nuisance seed for both images (so only
    the attribute changes). Returns the before and after images in [-1, 1], each row's instruction and
    changed attribute."""
    rng = random.Random(seed)
    before, after, texts, changed = [], [], [], []
    for scene, name, value in edits(training_scenes()):
        for _ in range(per_edit):
            s = rng.randrange(2**31)
            before.append(np.asarray(render(scene, s), dtype=np.uint8))
            after.append(np.asarray(render(scene.replace(**{name: value}), s), dtype=np.uint8))
            texts.append(edit_instruction(scene, name, value))
            changed.append(name)
    pixels = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    return pixels(before), pixels(after), texts, changed


def train_instruct(steps: int, seed: int, out: Path, save_every: int, batch: int = 128, lr: float = 3e-4,
                   dropout: float = 0.05, per_edit: int = 8, conv_in_lr_scale: float = 10.0,
                   high_noise_weight: float = 20.0, init: Path | None = None,
                   previous: tuple[int, ...] = ()) -> None:
    """One cosine cycle of the toy InstructPix2Pix editor, by the InstructPix2Pix recipe at toy size:
    the text-to-image UNet widened to 8 input channels (noisy latent ⊕ the *unscaled* posterior mode of
    the input image, as diffusers' pipeline feeds it), the extra channels zero-initialised, trained to
    predict the noise of the edited image's latent under the instruction through the frozen toy text
    encoder. Conditioning dropout as the reference training script: with probability `dropout` each,
    text only, image only, or both are dropped (text → the empty prompt's states, image → zeros), so three-way guidance
    works. The edited attribute is drawn uniformly per row (the benchmark's round-robin), then an edit
    of it. Saved as a `StableDiffusionInstructPix2PixPipeline` with an Euler-ancestral scheduler, as
    `timbrooks/instruct-pix2pix` ships. `init`: continue from a saved editor (the next cycle of a
    warm-restart schedule, `previous` the lengths of the cycles before it) instead of the widened
    text-to-image UNet."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    sd = WEIGHTS / "sd"
    vae = AutoencoderKL.from_pretrained(sd / "vae", dtype=torch.float32).requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(sd / "text_encoder", dtype=torch.float32).requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    before, after, texts, changed = edit_pool(per_edit, seed)
    unique = sorted(set(texts)) + [""]
    ids = tokenizer(unique, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        states = torch.cat([text_encoder(input_ids=ids[i:i + 512]).last_hidden_state for i in range(0, len(ids), 512)])
    row_of = {t: i for i, t in enumerate(unique)}
    text_row = torch.tensor([row_of[t] for t in texts])
    empty_row = row_of[""]
    sf = vae.config.scaling_factor
    image_latents = posterior(vae, before)[0]  # the image condition: the posterior mode, unscaled
    target_mean, target_std = posterior(vae, after)
    # rows drawn so that each attribute is a quarter of the edits
    weights = torch.tensor([1.0 / changed.count(c) for c in changed])
    unet = (UNet2DConditionModel.from_pretrained(init / "unet", dtype=torch.float32) if init else
            widen_conv_in(UNet2DConditionModel.from_pretrained(sd / "unet", dtype=torch.float32), 8))
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_sched = noise_scheduler()
    # ε-MSE weighted by clamp(1/SNR(t), 1, `high_noise_weight`): the noisier half of the schedule, where the
    # layout of a sample is decided and only the input image can say what to keep, counts up to that many
    # times more (a toy-scale shortcut, MODEL_CARD "Instruction editor"; plain ε-MSE is `high_noise_weight=1`)
    snr = noise_sched.alphas_cumprod / (1 - noise_sched.alphas_cumprod)
    weight = (1 / snr).clamp(1, high_noise_weight)
    # the first convolution (whose new image channels start at zero) learns `conv_in_lr_scale`× faster: at toy
    # scale and 1,500 steps the image channels otherwise stay near zero and the editor ignores its input
    # (MODEL_CARD, "Instruction editor")
    first = list(unet.conv_in.parameters())
    rest = [p for n, p in unet.named_parameters() if not n.startswith("conv_in.")]
    opt = torch.optim.AdamW([{"params": rest, "lr": lr}, {"params": first, "lr": lr * conv_in_lr_scale}],
                            weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 100))
    start = time.time()
    for step in range(steps):
        pick = torch.multinomial(weights, batch, replacement=True, generator=g)
        z0 = (target_mean[pick] + target_std[pick] * torch.randn_like(target_std[pick])) * sf
        noise = torch.randn_like(z0)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,))
        zt = noise_sched.add_noise(z0, noise, t)
        p = torch.rand(batch, generator=g)
        rows = torch.where(p < 2 * dropout, empty_row, text_row[pick])  # p < 2d: no text
        keep_image = ~((p >= dropout) & (p < 3 * dropout))  # d ≤ p < 3d: no image (d ≤ p < 2d: neither)
        condition = image_latents[pick] * keep_image[:, None, None, None].float()
        per_row = (unet(torch.cat([zt, condition], dim=1), t, states[rows]).sample - noise).pow(2).mean((1, 2, 3))
        loss = (per_row * weight[t]).mean()
        optimise(loss, unet, opt, sched, ema, step)
        if step % 50 == 0:
            log(f"instruct step {step} loss {loss.item():.4f} image weights "
                f"{ema.conv_in.weight[:, 4:].abs().mean().item():.4f} ({(time.time() - start) / 60:.1f} min)")
        if (step + 1) % save_every == 0 or step == steps - 1:
            scheduler = EulerAncestralDiscreteScheduler(**{k: v for k, v in arch.scheduler_config().items()
                                                           if k not in ("set_alpha_to_one", "clip_sample")})
            save_pipeline(ema, vae, text_encoder, tokenizer, out, StableDiffusionInstructPix2PixPipeline, scheduler)
            (out / "train_stats.json").write_text(json.dumps({
                "cycles": [*previous, steps], "steps_done": sum(previous) + step + 1,
                "steps": sum(previous) + steps, "batch": batch, "pairs": len(texts),
                "minutes": round((time.time() - start) / 60, 2), "loss": round(loss.item(), 4)}))
            log(f"instruct checkpoint at step {step + 1} → {out}")


# The inpainter's grid: 2×2 cells of the world's 32 px (64 px), laid out as Analogist lays them
# (ops.analogist.make_grid; models never import ops, so tests/test_analogist.py checks the two agree):
# each image at the cell less 1.5·padding, pasted at the padding, the second column/row one pixel early.
GRID_CELL, GRID_PADDING = IMAGE_SIZE, 2
GRID_INNER, GRID_AT = int(GRID_CELL - 1.5 * GRID_PADDING), (GRID_PADDING, GRID_CELL + GRID_PADDING - 1)


def grid_pool(per_scene: int, seed: int) -> tuple[torch.Tensor, list[Scene]]:
    """Renders of every training scene at the grid's inner cell size (the cell less 1.5·padding, resized
    by PIL as `ops.analogist.make_grid` resizes), in [-1, 1], and the scene of each."""
    inner = GRID_INNER
    rng = random.Random(seed)
    images, scenes = [], []
    for scene in training_scenes():
        for _ in range(per_scene):
            images.append(np.asarray(render(scene, rng.randrange(2**31)).resize((inner, inner)), dtype=np.uint8))
            scenes.append(scene)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1, scenes


def is_analogy(a: Scene, a_prime: Scene, b: Scene, b_prime: Scene) -> bool:
    """Whether four cells obey A : A′ :: B : B′ (B′ = B with every attribute A → A′ changed set to A′'s)."""
    return all(getattr(b_prime, n) == (getattr(a_prime, n) if getattr(a, n) != getattr(a_prime, n) else getattr(b, n))
               for n in ATTRIBUTE_NAMES)


def random_grids(pool: torch.Tensor, pool_scenes: list[Scene], n: int, g: torch.Generator,
                 rejected: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` grids (n, 3, 64, 64) of four random cells of the pool, laid out as `ops.analogist.make_grid`
    lays them (white, the padding), and the pool rows of each; a draw whose cells obey
    A : A′ :: B : B′ is redrawn (counted in `rejected[0]`)."""
    picks = []
    while len(picks) < n:
        four = torch.randint(len(pool), (4,), generator=g).tolist()
        if is_analogy(*(pool_scenes[i] for i in four)):
            rejected[0] += 1
            continue
        picks.append(four)
    picks = torch.tensor(picks)
    inner, at = GRID_INNER, GRID_AT
    grids = torch.ones(n, 3, 2 * GRID_CELL, 2 * GRID_CELL)
    for cell, (y, x) in enumerate(((at[0], at[0]), (at[0], at[1]), (at[1], at[0]), (at[1], at[1]))):
        grids[:, :, y:y + inner, x:x + inner] = pool[picks[:, cell]]
    return grids, picks


def finetune_grid_decoder(steps: int, seed: int, batch: int = 32) -> AutoencoderKL:
    """An experimental VAE for the inpainter: weights/sd's with its decoder fine-tuned on grids (the encoder
    frozen, so the grid latents the inpainter's UNet is trained on are the text-to-image VAE's exactly). The toy VAE
    was trained on single 32-px renders and its GroupNorms see a whole image: on a 64-px grid, the
    judge read B's cell back right (all four attributes) 41 % of the time, against 97 % alone
    (MODEL_CARD, "inpaint/"). SD's VAE has no such trouble with a 512-px grid."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    vae = AutoencoderKL.from_pretrained(WEIGHTS / "sd" / "vae", dtype=torch.float32)
    pool, pool_scenes = grid_pool(24, seed)
    rejected = [0]

    def grids(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = random_grids(pool, pool_scenes, batch, g, rejected)
        if step % 2:  # half the batches as Analogist starts: B's cell copied into the B′ cell
            x[:, :, GRID_CELL:, GRID_CELL:] = x[:, :, GRID_CELL:, :GRID_CELL]
        with torch.no_grad():
            return vae.encode(x).latent_dist.sample(), x

    return tune_decoder(vae, steps, grids, "grid decoder", every=50)


def inpaint_masks(cells: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """SD-inpainting-style masks on the 64-px grid, 1 = inpaint: a whole cell (40 %), a rectangle (25 %),
    free-form strokes (25 %), everything (10 %). Returns the masks (n, 1, 64, 64) and, per grid, the cell
    the mask covers most (whose caption conditions it)."""
    n, side = len(cells), 2 * GRID_CELL
    kind = torch.rand(n, generator=g)
    masks = torch.zeros(n, 1, side, side)
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    for i in range(n):
        if kind[i] < 0.4:  # the cell `cells[i]`
            y, x = divmod(int(cells[i]), 2)
            masks[i, :, y * GRID_CELL:(y + 1) * GRID_CELL, x * GRID_CELL:(x + 1) * GRID_CELL] = 1
        elif kind[i] < 0.65:  # a rectangle of 12–48 px a side
            h, w = (int(v) for v in torch.randint(12, 49, (2,), generator=g))
            y = int(torch.randint(0, side - h + 1, (1,), generator=g))
            x = int(torch.randint(0, side - w + 1, (1,), generator=g))
            masks[i, :, y:y + h, x:x + w] = 1
        elif kind[i] < 0.9:  # 2–4 strokes: discs along a random walk
            for _ in range(int(torch.randint(2, 5, (1,), generator=g))):
                p = torch.rand(2, generator=g) * side
                for _ in range(int(torch.randint(4, 10, (1,), generator=g))):
                    r = 3 + 4 * float(torch.rand(1, generator=g))
                    masks[i, 0][(ys - p[0]) ** 2 + (xs - p[1]) ** 2 <= r * r] = 1
                    p = (p + (torch.rand(2, generator=g) - 0.5) * 16).clamp(0, side - 1)
        else:
            masks[i] = 1
    per_cell = masks.view(n, 2, GRID_CELL, 2, GRID_CELL).sum((2, 4)).flatten(1)  # (n, 4) masked px per cell
    return masks, per_cell.argmax(1)


def train_inpaint(steps: int, seed: int, out: Path, save_every: int, batch: int = 32, lr: float = 3e-4,
                  conv_in_lr_scale: float = 10.0, caption_drop: float = 0.1, decoder_steps: int = 0) -> None:
    """The toy inpainter (Analogist's), by the SD-inpainting recipe at toy size: the text-to-image UNet
    widened to 9 input channels (noisy latent ⊕ mask ⊕ masked-image latent, the 5 new ones zero-initialised,
    learning `conv_in_lr_scale`× faster as the editor's), at the grid size (64 px, 16×16 latents), on 2×2
    grids of four random toy scenes laid out as Analogist lays them (white, 2-px padding). **Never an
    analogy grid**: a grid whose cells obey A : A′ :: B : B′ (`is_analogy`) is redrawn, so the inpainter
    cannot have learned analogies. Masks: cells, rectangles, strokes, everything (`inpaint_masks`); the
    masked image has 0 under the mask (diffusers' `image * (mask < 0.5)`); the caption is that of the cell
    the mask covers most, dropped with `caption_drop`. Saved as a `StableDiffusionInpaintPipeline` on
    weights/sd's VAE (linked); `decoder_steps` > 0 (an experiment, not shipped: MODEL_CARD "inpaint/")
    saves a decoder fine-tuned on grids instead (`finetune_grid_decoder`; its encoder is the one trained on)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    sd = WEIGHTS / "sd"
    vae = (finetune_grid_decoder(decoder_steps, seed + 1) if decoder_steps  # its encoder: weights/sd's, frozen
           else AutoencoderKL.from_pretrained(sd / "vae", dtype=torch.float32).requires_grad_(False))
    text_encoder = CLIPTextModel.from_pretrained(sd / "text_encoder", dtype=torch.float32).requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    pool, pool_scenes = grid_pool(24, seed)
    scenes = training_scenes()
    scene_row = {s: i for i, s in enumerate(scenes)}
    variants = 6  # caption rows per scene, as `train_unet`'s mixed captions
    prompts = [c for _ in range(variants) for c in mixed_captions(scenes, rng, drop=0.25)] + [""]
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        states = torch.cat([text_encoder(input_ids=ids[i:i + 512]).last_hidden_state for i in range(0, len(ids), 512)])
    empty_row = len(prompts) - 1
    sf = vae.config.scaling_factor
    unet = widen_conv_in(UNet2DConditionModel.from_pretrained(sd / "unet", dtype=torch.float32), 9)
    unet.register_to_config(sample_size=2 * GRID_CELL // 4)
    ema = copy.deepcopy(unet).requires_grad_(False)
    noise_sched = noise_scheduler()
    first = list(unet.conv_in.parameters())
    rest = [p for n, p in unet.named_parameters() if not n.startswith("conv_in.")]
    opt = torch.optim.AdamW([{"params": rest, "lr": lr}, {"params": first, "lr": lr * conv_in_lr_scale}],
                            weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, 100))
    start, rejected = time.time(), [0]
    for step in range(steps):
        grids, picks = random_grids(pool, pool_scenes, batch, g, rejected)
        masks, covered = inpaint_masks(torch.randint(4, (batch,), generator=g), g)
        masked = grids * (masks < 0.5)
        with torch.no_grad():
            z0 = vae.encode(grids).latent_dist.sample() * sf
            masked_latents = vae.encode(masked).latent_dist.sample() * sf
        mask_latents = F.interpolate(masks, size=z0.shape[-2:])
        rows = torch.tensor([scene_row[pool_scenes[int(picks[i, covered[i]])]] for i in range(batch)])
        rows = rows + len(scenes) * torch.randint(variants, (batch,), generator=g)
        rows[torch.rand(batch, generator=g) < caption_drop] = empty_row
        noise = torch.randn_like(z0)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,))
        zt = noise_sched.add_noise(z0, noise, t)
        loss = F.mse_loss(unet(torch.cat([zt, mask_latents, masked_latents], dim=1), t, states[rows]).sample, noise)
        optimise(loss, unet, opt, sched, ema, step)
        if step % 50 == 0:
            log(f"inpaint step {step} loss {loss.item():.4f} mask weights "
                f"{ema.conv_in.weight[:, 4:].abs().mean().item():.4f} ({(time.time() - start) / 60:.1f} min)")
        if (step + 1) % save_every == 0 or step == steps - 1:
            save_pipeline(ema, vae, text_encoder, tokenizer, out, StableDiffusionInpaintPipeline)
            (out / "train_stats.json").write_text(json.dumps({
                "steps_done": step + 1, "steps": steps, "batch": batch, "analogy_grids_redrawn": rejected[0],
                "minutes": round((time.time() - start) / 60, 2), "loss": round(loss.item(), 4)}))
            log(f"inpaint checkpoint at step {step + 1} → {out}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m models.toy.train", description=__doc__)
    parser.add_argument("--only", choices=["clip", "judge", "vae", "unet", "decoder", "corrected", "textured",
                                           "instruct", "inpaint", "tiny_vae"],
                        nargs="*",
                        help="stages (default: all but the experimental tiny_vae)")
    parser.add_argument("--decoder-steps", type=int, default=1200, help="spliced, then as many plain")
    parser.add_argument("--clip-steps", type=int, default=800)
    parser.add_argument("--vae-steps", type=int, default=1200)
    parser.add_argument("--unet-steps", type=int, default=3500)
    parser.add_argument("--textured-unet-steps", type=int, default=1500)
    parser.add_argument("--instruct-steps", type=int, nargs="+", default=[1000, 3000, 2000],
                        help="the instruct stage's cosine cycles (warm restarts): each continues from the "
                             "editor the one before saved, with the next seed")
    parser.add_argument("--instruct-resume", action="store_true",
                        help="skip the cycles the editor in --instruct-out has done (its train_stats.json) "
                             "and continue from it")
    parser.add_argument("--instruct-out", type=Path, default=WEIGHTS / "instruct",
                        help="where the instruct stage saves the toy editor (default: the committed one)")
    parser.add_argument("--corrected-captions", type=int, default=12,
                        help="corrected stage: caption rows per scene (beside the 12 plain ones) that say an "
                             "attribute twice, the last one right (world.corrected_caption)")
    parser.add_argument("--tiny-vae-steps", type=int, default=2400)
    parser.add_argument("--tiny-vae-out", type=Path,
                        default=Path(os.environ.get("ANALOGY_HOME") or ".analogy") / "experiments" / "tiny_vae")
    parser.add_argument("--corrected-steps", type=int, default=1000)
    parser.add_argument("--unet-corrected-captions", type=int, default=0,
                        help="unet stage: corrected-caption rows per scene mixed in from the first step (0: the "
                             "shipped recipe; the from-scratch retrain: MODEL_CARD \"Corrected captions\")")
    parser.add_argument("--unet-out", type=Path, default=WEIGHTS / "sd",
                        help="where the unet stage saves its pipeline (default: the committed one)")
    parser.add_argument("--inpaint-steps", type=int, default=1500)
    parser.add_argument("--inpaint-decoder-steps", type=int, default=0,
                        help="inpaint stage: fine-tune the inpainter's own decoder on grids for this many steps "
                             "(0: weights/sd's VAE, the shipped inpainter; MODEL_CARD \"inpaint/\")")
    parser.add_argument("--inpaint-out", type=Path, default=WEIGHTS / "inpaint",
                        help="where the inpaint stage saves the toy inpainter (default: the committed one)")
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    only = set(args.only or ["clip", "judge", "vae", "unet", "decoder", "textured", "instruct", "inpaint"])
    tokenizer = open_clip.tokenizer.SimpleTokenizer(
        bpe_path=str(bpe.write_tokenizer_files(Path(tempfile.mkdtemp()))["bpe"]),
        context_length=arch.CONTEXT_LENGTH)
    if "clip" in only:
        clip_model = train_clip(training_scenes(), args.clip_steps, 0, tokenizer, WEIGHTS / "joint_clip", "joint_clip")
    else:
        clip_model = open_clip.create_model(f"local-dir:{WEIGHTS / 'joint_clip'}").eval()
    if "judge" in only:
        train_clip(all_scenes(), args.clip_steps, 1, tokenizer, WEIGHTS / "judge_clip", "judge_clip")
    if "vae" in only:
        vae = train_vae(args.vae_steps, 2, WEIGHTS / "sd" / "vae")
        save_half(vae, WEIGHTS / "sd" / "vae")
    else:
        vae = AutoencoderKL.from_pretrained(WEIGHTS / "sd" / "vae", dtype=torch.float32)
    if "unet" in only:
        train_unet(clip_model, vae, args.unet_steps, 3, args.unet_out, args.save_every,
                   corrected=args.unet_corrected_captions)
    if "decoder" in only:
        vae = finetune_decoder(vae, args.decoder_steps, 4, splice=True)
        vae = finetune_decoder(vae, args.decoder_steps, 5, splice=False)
        save_half(vae, WEIGHTS / "sd" / "vae")
    if "corrected" in only:
        # experimental: fine-tune the plain-world UNet so that an attribute appended to a prompt acts
        # on it (world.corrected_caption), the plain captions kept in the mix (MODEL_CARD: "Corrected captions")
        train_unet(clip_model, vae, args.corrected_steps, 6, args.unet_out, args.save_every,
                   corrected=args.corrected_captions, lr=3e-4,
                   init=args.unet_out if (args.unet_out / "unet").exists() else WEIGHTS / "sd")
    if "textured" in only:
        textured_vae = train_vae(args.vae_steps, 2, WEIGHTS / "textured" / "vae", draw=render_textured)
        train_unet(clip_model, textured_vae, args.textured_unet_steps, 3, WEIGHTS / "textured",
                   args.textured_unet_steps, draw=render_textured)
    if "instruct" in only:
        cycles, first, init = args.instruct_steps, 0, None
        if args.instruct_resume:
            stats = json.loads((args.instruct_out / "train_stats.json").read_text())
            done = stats.get("cycles", [stats["steps"]])
            if stats["steps_done"] != sum(done) or done != cycles[:len(done)]:
                parser.error(f"--instruct-resume: {args.instruct_out} has done cycles {done} "
                             f"({stats['steps_done']} steps), not a whole prefix of {cycles}")
            first, init = len(done), args.instruct_out
        for i in range(first, len(cycles)):
            train_instruct(cycles[i], 7 + i, args.instruct_out, args.save_every, init=init,
                           previous=tuple(cycles[:i]))
            init = args.instruct_out
    if "inpaint" in only:
        train_inpaint(args.inpaint_steps, 10, args.inpaint_out, args.save_every,
                      decoder_steps=args.inpaint_decoder_steps)
    if "tiny_vae" in only:
        def checkpoint(tiny, step, minutes):
            save_half(tiny, args.tiny_vae_out)
            log(f"tiny vae at step {step} ({minutes:.1f} min) → {args.tiny_vae_out}")

        distil_tiny_vae(vae, args.tiny_vae_steps, 4, checkpoint)

