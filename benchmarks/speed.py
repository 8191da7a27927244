"""DIFF-token training speed: k pairs one after another (the naive loop: a batch of one each) against
k pairs in one batch (ops.diff_tokens.train_diff_tokens_batch), measured in the same run, plus
PEZ and one B′ generation on the same machine.

    python -m benchmarks.speed --profile toy --k 8 --steps 100             # the committed toy models
    python -m benchmarks.speed --arch sd21-base --size 512 --steps 3000    # full-size SD 2.1-base, random weights
    python -m benchmarks.speed --arch sd21 --size 768 --steps 3000         # the 768-px v-prediction one
    python -m benchmarks.speed --arch sd21-base --size 64 --k 2 --steps 2 --pez-steps 2 --gen-steps 2  # CPU smoke

`--arch` builds the architecture from its config with random weights (speed does not need the
real weights; nothing is downloaded): the SD 2.1 UNet, the OpenCLIP ViT-H/14 text encoder as
diffusers' CLIPTextModel, the SD VAE, and the joint CLIP (open_clip ViT-H-14) for the CLIP loss and PEZ.
Peak memory: on CUDA, torch's peak allocation in each phase; on CPU, the process's peak resident
set size after each phase (it only grows, so the loop runs first). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from types import SimpleNamespace

import torch

from ops.diff_tokens import PairInputs, train_diff_tokens_batch
from ops.difference_inversion import DIConfig, apply_difference
from ops.pez import pez_prompt

SD21_UNET = dict(in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=1024,
                 block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
                 use_linear_projection=True,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SD21_TEXT = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                 num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
                 bos_token_id=49406, eos_token_id=49407, pad_token_id=0)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def random_arch(arch: str, size: int, device: str):
    """(pipe-like namespace, joint CLIP) of the full-size architecture with random weights."""
    import diffusers
    import open_clip
    from transformers import CLIPTextConfig, CLIPTextModel

    from models.loaders import JointClip

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(sample_size=size // 8, **SD21_UNET)
    text_encoder = CLIPTextModel(CLIPTextConfig(**SD21_TEXT))
    vae = diffusers.AutoencoderKL(**SD_VAE)
    prediction = "v_prediction" if arch == "sd21" else "epsilon"
    scheduler = diffusers.DDIMScheduler(prediction_type=prediction, **SCHEDULER)
    for module in (unet, text_encoder, vae):
        module.requires_grad_(False).eval().to(device)
    tokenizer = SimpleNamespace(bos_token_id=49406, eos_token_id=49407, pad_token_id=0, model_max_length=77)
    pipe = SimpleNamespace(unet=unet, text_encoder=text_encoder, vae=vae, scheduler=scheduler, tokenizer=tokenizer,
                           vae_scale_factor=8, device=torch.device(device))
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-H-14", pretrained=None)
    model.requires_grad_(False).eval().to(device)
    clip = JointClip(model, open_clip.get_tokenizer("ViT-H-14"), preprocess, "ViT-H-14 (random)", 49406, 49407)
    return pipe, clip


def toy_models(profile: str, device: str):
    from models.context import ModelContext

    models = ModelContext(profile, device)
    return models.pipeline, models.joint_clip


def random_pairs(pipe, clip, k: int, size: int, device: str) -> list[PairInputs]:
    """k pairs of random latents, 8-token prompts and unit deltas (training cost does not depend
    on what the pairs show)."""
    g = torch.Generator().manual_seed(1)
    channels = pipe.unet.config.in_channels
    side = size // pipe.vae_scale_factor
    vocab = pipe.text_encoder.get_input_embeddings().weight.shape[0] - 3
    dim = clip.model.text_projection.shape[-1] if isinstance(clip.model.text_projection, torch.Tensor) else \
        clip.model.text_projection.out_features
    pairs = []
    for i in range(k):
        z = torch.randn(2, channels, side, side, generator=g).to(device)
        ids = torch.randint(1, vocab, (2, 8), generator=g).tolist()
        pairs.append(PairInputs(z[:1], z[1:], ids[0], ids[1], torch.randn(dim, generator=g).to(device), 100 + i))
    return pairs


def peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as f:  # VmHWM: the process's peak resident set size
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def timed(device: str, fn):
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start, peak_mb(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--profile", default="toy", help="a model profile whose models are on this machine (default toy)")
    p.add_argument("--arch", choices=["sd21-base", "sd21"], help="instead of a profile: the full-size architecture, "
                   "random weights")
    p.add_argument("--size", type=int, help="image size in px (default: the profile's; 512 for --arch)")
    p.add_argument("--k", type=int, default=8, help="pairs (default 8)")
    p.add_argument("--steps", type=int, default=100, help="DIFF-token steps per pair (paper: 3000)")
    p.add_argument("--pez-steps", type=int, default=100, help="PEZ steps for one image (paper: 3000)")
    p.add_argument("--gen-steps", type=int, default=50, help="DDIM steps of one B′ generation (paper: 50, CFG 7.5)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="of the batched path (the loop is always the naive "
                   "fp32 one); default bf16 on CUDA, fp32 on CPU")
    args = p.parse_args()
    device = args.device

    if args.arch:
        size = args.size or 512
        pipe, clip = random_arch(args.arch, size, device)
        name = f"{args.arch} (random weights)"
    else:
        pipe, clip = toy_models(args.profile, device)
        size = args.size or pipe.unet.config.sample_size * pipe.vae_scale_factor
        name = args.profile
    config = replace(DIConfig(), steps=args.steps)  # the paper's loss weights: they change no timing
    pairs = random_pairs(pipe, clip, args.k, size, device)
    train_diff_tokens_batch(pipe, clip, pairs[:1], replace(config, steps=2).training)  # warm-up (kernels, caches)

    _, loop_s, loop_peak = timed(device, lambda: [train_diff_tokens_batch(pipe, clip, [pair], config.training)
                                                  for pair in pairs])
    precision = args.precision or ("bf16" if device == "cuda" else "fp32")
    batched = replace(config, precision=precision).training
    _, batch_s, batch_peak = timed(device, lambda: train_diff_tokens_batch(pipe, clip, pairs, batched))
    from PIL import Image

    image = Image.new("RGB", (size, size), (120, 60, 200))
    _, pez_s, _ = timed(device, lambda: pez_prompt(clip, [image], steps=args.pez_steps, seed=0))
    generate = replace(config, num_steps=args.gen_steps, inversion_steps=args.gen_steps)
    tokens = torch.zeros(config.n_tokens, pipe.text_encoder.get_input_embeddings().weight.shape[1], device=device)
    if args.arch:  # no tokenizer for "": generation's unconditional branch uses the empty prompt's ids
        pipe.tokenizer = _ids_tokenizer(pipe.tokenizer)
    _, gen_s, _ = timed(device, lambda: apply_difference(pipe, image, pairs[0].prompt_a, tokens, generate))

    result = {"model": name, "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor()
              or platform.machine(), "threads": torch.get_num_threads(), "size": size, "k": args.k,
              "batched_precision": precision,
              "steps": args.steps, "loop_s_per_pair": round(loop_s / args.k, 3),
              "batched_s_per_pair": round(batch_s / args.k, 3), "ratio": round(loop_s / batch_s, 2),
              "loop_peak_mb": round(loop_peak), "batched_peak_mb": round(batch_peak),
              "loop_s_per_pair_at_3000_steps": round(loop_s / args.k / args.steps * 3000, 1),
              "batched_s_per_pair_at_3000_steps": round(batch_s / args.k / args.steps * 3000, 1),
              "pez_steps": args.pez_steps, "pez_s": round(pez_s, 2),
              "generation_steps": args.gen_steps, "generation_s": round(gen_s, 2)}
    print(f"{name} on {result['device']} ({result['threads']} threads), {size}px, k={args.k}, {args.steps} steps:")
    print(f"  DIFF loop     {result['loop_s_per_pair']:.3f} s/pair   peak {result['loop_peak_mb']} MB")
    print(f"  DIFF batched ({precision})  {result['batched_s_per_pair']:.3f} s/pair   "
          f"peak {result['batched_peak_mb']} MB   ratio {result['ratio']}×")
    print(f"  PEZ {args.pez_steps} steps {pez_s:.2f} s; one B′ ({args.gen_steps} DDIM steps, CFG 7.5) {gen_s:.2f} s")
    print(json.dumps(result))


def _ids_tokenizer(specials):
    """A stand-in tokenizer for random-weight runs: every text is the empty prompt (SOT, EOT, pad)."""

    class Tokenizer:
        bos_token_id, eos_token_id, pad_token_id = specials.bos_token_id, specials.eos_token_id, specials.pad_token_id
        model_max_length = specials.model_max_length

        def __call__(self, texts, **_):
            texts = [texts] if isinstance(texts, str) else texts
            row = [self.bos_token_id, self.eos_token_id] + [self.pad_token_id] * (self.model_max_length - 2)
            return SimpleNamespace(input_ids=torch.tensor([row] * len(texts)))

    return Tokenizer()


if __name__ == "__main__":
    main()
