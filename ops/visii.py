"""VISII, Visual Instruction Inversion (Nguyen et al.): learn the instruction that turns A into A′ for
the instruction editor (InstructPix2Pix), then edit B with it. As the official `visii.py: train()` and
`test.py` run it:

    1. init: a PEZ hard prompt of **A′** through the joint CLIP (the official code optimises PEZ on the
       after image), tokenised by the editor; c = Tsd(prompt), ∅ = Tsd(negative prompt)
       (init_tokens='added', a switch: only the tokens of PEZ(A′) that a PEZ prompt of A lacks)
    2. the learned variable: c's rows 1 … EOT−1 (SOT, EOT onward and ∅ stay the init's)
    3. the edit direction d = n(mean EI(A′) − mean EI(A)) in the editor CLIP's image space
    4. `steps` steps, one per timestep of a shuffled 0…999, with noise drawn once per timestep:
           z_t = √ᾱ_t·z(A′) + √(1−ᾱ_t)·ε,   ε̂ = the three-way-guided ε (s_T, s_I) of the editor
           conditioned on c and on E(A) (ops.instructpix2pix.guided_noise)
           L = λ_mse·MSE(ε̂, ε) − λ_clip·min(cos(d, n(proj(mean of c's rows))), 0.5)
       AdamW, gradient values clipped at the init states' maximum; keep the rows after the step
       with the lowest MSE ("best", the official checkpoint) and the last rows
    5. B′: the editor from pure noise on B, Euler ancestral (the editor's scheduler), 20 steps,
       s_T = 8, s_I = 1.5, with the learned c (`keep`: best | last) against ∅

The learned instruction depends on (A, A′) only and is cached: one training serves every B.

Where this differs from the official code, and why:
- torch AdamW in fp32 on any device by default; the official bitsandbytes 8-bit AdamW is
  `optimizer="adamw8bit"` (needs bitsandbytes and a GPU). The official code's fp16 Accelerator never
  wraps a model, so its forward passes are fp32 too.
- Only rows 1 … EOT−1 are a parameter; the official code optimises the whole [c, ∅, ∅] tensor and
  restores the rest after every step. AdamW, weight decay and value clipping act element by element,
  so the learned rows are the same.
- z_t is written with ᾱ_t; the official code noises with the Euler scheduler (x0 + σ_t·ε) and scales
  the input by 1/√(σ_t² + 1), which is the same latent.
- The official code runs on diffusers 0.17, which applies the guidance to predicted x0 for sigma
  schedulers; its weights sum to one, so that equals guidance on ε, which current diffusers does.
- `steps` below 1,000 (a switch, not the default) trains on the first `steps` of the shuffled timesteps.
- `init_tokens='added'` (a switch, not the default) starts from the tokens of PEZ(A′) that PEZ(A) lacks
  instead of all of PEZ(A′): the official init describes the whole of A′, and the pair loss cannot remove
  A′'s unchanged attributes from it (A has them too), so the editor paints them onto B.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib.util import find_spec

import torch
import torch.nn.functional as F
from PIL import Image

from ops.cache import Cache, config_hash, content_seed, single
from ops.ddim import decode_latents, encode_images
from ops.diff_tokens import TrainingDivergedError, without
from ops.images import to_pil
from ops.instructpix2pix import edit_latents, guided_noise, image_condition
from ops.pez import pez_prompts
from ops.progress import reporter
from ops.text import encode_prompt

# Settings that change only step 5 (applying the instruction to B); the others change the training.
APPLY_FIELDS = ("keep", "num_steps", "guidance_scale", "image_guidance_scale")


@dataclass(frozen=True)
class VISIIConfig:
    """Defaults: the official code (`configs/config_ip2p.yaml`, `hard_prompts_made_easy.json`, `test.py`).
    The toy profile shortens PEZ (models/profiles.py)."""

    # 1. the init: PEZ on A′ (ViT-H-14 in the official code: the joint CLIP of the SD 2 profiles)
    pez_tokens: int = 10
    pez_steps: int = 3000
    negative_prompt: str = ""
    # which of PEZ(A′)'s tokens start the instruction: "all" (the official) | "added": those a PEZ prompt of A
    # (same length and steps) lacks, the words of what changed without A′'s unchanged attributes
    init_tokens: str = "all"
    # 4. training
    steps: int = 1000
    lr: float = 1e-3
    lambda_mse: float = 4.0
    lambda_clip: float = 0.1
    clip_max: float = 0.5  # the CLIP term's cosine is clamped at this
    train_guidance_scale: float = 7.5
    train_image_guidance_scale: float = 1.5
    optimizer: str = "adamw"  # adamw (torch, fp32) | adamw8bit (bitsandbytes, the official code; GPU)
    # 5. applying it: which rows (best = lowest single-step MSE, the official checkpoint | last) and the sampler
    keep: str = "best"
    num_steps: int = 20
    guidance_scale: float = 8.0
    image_guidance_scale: float = 1.5

    def __post_init__(self):
        for name, allowed in {"keep": ("best", "last"), "optimizer": ("adamw", "adamw8bit"),
                              "init_tokens": ("all", "added")}.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.optimizer == "adamw8bit" and find_spec("bitsandbytes") is None:
            raise ValueError("optimizer='adamw8bit' needs bitsandbytes (and a GPU); use optimizer='adamw'")
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be in 1..1000 (one per timestep), got {self.steps}")

    def training_hash(self) -> str:
        """What the learned instruction depends on: every setting but the apply ones."""
        return config_hash({k: v for k, v in asdict(self).items() if k not in APPLY_FIELDS})


@dataclass
class LearnedInstruction:
    """c's rows after training: `best` and `last` (1, L, H), ∅ (1, L, H), and the record of the run."""

    best: torch.Tensor
    last: torch.Tensor
    uncond: torch.Tensor
    init_text: str = ""
    best_step: int = 0
    mse: list[float] = field(default_factory=list)  # per step
    clip: list[float] = field(default_factory=list)  # the clamped cosine per step


def _optimizer(params: list[torch.Tensor], config: VISIIConfig):
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr)
    import bitsandbytes as bnb  # present: VISIIConfig checked it

    return bnb.optim.AdamW8bit(params, lr=config.lr)


def edit_direction(clip, before: list[Image.Image], after: list[Image.Image]) -> torch.Tensor:
    """Step 3: n(mean EI(after) − mean EI(before)), (1, E); the features are not normalised first."""
    d = clip.encode_images(after).mean(0, keepdim=True) - clip.encode_images(before).mean(0, keepdim=True)
    return F.normalize(d, dim=-1)


def train_instruction(pipe, clip, a: Image.Image, a_prime: Image.Image, init_text: str,
                      config: VISIIConfig = VISIIConfig(), seed: int = 0, progress=None) -> LearnedInstruction:
    """Steps 1–4 for one pair: the editor instruction (as text-encoder states) that turns A into A′."""
    return single(train_instructions(pipe, clip, [(a, a_prime, init_text, seed)], config, progress))


def train_instructions(pipe, clip, pairs: list[tuple[Image.Image, Image.Image, str, int]],
                       config: VISIIConfig = VISIIConfig(), progress=None) -> list[LearnedInstruction | Exception]:
    """Steps 1–4 for many pairs (A, A′, init text, seed) at once: one UNet batch per step, each pair with
    its own rows, optimiser, noises and timestep order (drawn from its own seed), so each is what it
    gets alone up to the float rounding of batched kernels (every loss term is one pair's, and the UNet
    mixes nothing across a batch). A pair whose loss turns NaN or infinite stops with its
    TrainingDivergedError in its place; the others go on."""
    progress = reporter(progress, "VISII instruction" + (f"s ({len(pairs)})" if len(pairs) > 1 else ""))
    unet, device = pipe.unet, pipe.device
    uncond = encode_prompt(pipe, config.negative_prompt).float()
    alphas = pipe.scheduler.alphas_cumprod.to(device)
    n_train = pipe.scheduler.config.num_train_timesteps
    runs = []
    for a, a_prime, init_text, seed in pairs:
        generator = torch.Generator().manual_seed(seed)
        # 1. the init's states
        ids = pipe.tokenizer(init_text, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        eot = int((ids[0] == pipe.tokenizer.eos_token_id).nonzero()[0])
        with torch.no_grad():
            init = pipe.text_encoder(input_ids=ids).last_hidden_state.float()
        # 2. the learned rows
        rows = torch.nn.Parameter(init[:, 1:eot].clone())
        target = encode_images(pipe, [a_prime])  # E(A′), scaled
        runs.append({
            "init": init, "eot": eot, "rows": rows, "optimizer": _optimizer([rows], config),
            "clip_value": float(torch.maximum(init.max(), uncond.max())),  # the official code: [c, ∅, ∅].max()
            # 3. the edit direction
            "direction": edit_direction(clip, [a], [a_prime]),
            "image": image_condition(pipe, [a]), "target": target,
            "noises": torch.randn((n_train, *target.shape[1:]), generator=generator).to(device, target.dtype),
            "order": torch.randperm(n_train, generator=generator)[:config.steps].tolist(),
            "best": rows.detach().clone(), "best_mse": float("inf"), "best_step": 0, "mse": [], "clip": [],
            "init_text": init_text, "error": None})
    # 4. training on (E(A) → A′)
    for step in range(config.steps):
        active = [r for r in runs if r["error"] is None]
        if not active:
            break
        conds = torch.cat([_states(r, r["rows"]) for r in active])
        noise = torch.stack([r["noises"][r["order"][step]] for r in active])
        a_t = torch.stack([alphas[r["order"][step]] for r in active]).to(noise.dtype)[:, None, None, None]
        z_t = a_t.sqrt() * torch.cat([r["target"] for r in active]) + (1 - a_t).sqrt() * noise
        timesteps = torch.tensor([r["order"][step] for r in active], device=device)
        eps = guided_noise(unet, z_t.to(unet.dtype), timesteps, conds.to(unet.dtype),
                           uncond.to(unet.dtype).expand(len(active), -1, -1), torch.cat([r["image"] for r in active]),
                           config.train_guidance_scale, config.train_image_guidance_scale)
        mse = (eps.float() - noise.float()).pow(2).flatten(1).mean(1)
        text = F.normalize(clip.project_text(conds.mean(1)), dim=-1)
        cosine = F.cosine_similarity(torch.cat([r["direction"] for r in active]), text).clamp(max=config.clip_max)
        losses = config.lambda_mse * mse - config.lambda_clip * cosine
        finite = torch.isfinite(losses)
        for r, ok, value in zip(active, finite.tolist(), losses.tolist()):
            if not ok:
                r["error"] = TrainingDivergedError(f"VISII loss became {value} at step {step}")
        for r in active:
            r["optimizer"].zero_grad()
        losses[finite].sum().backward()
        for r, ok, m, c in zip(active, finite.tolist(), mse.tolist(), cosine.tolist()):
            if not ok:
                continue
            torch.nn.utils.clip_grad_value_([r["rows"]], r["clip_value"])
            r["optimizer"].step()
            r["mse"].append(m)
            r["clip"].append(c)
            if m <= r["best_mse"]:  # the official "best": the rows after the step of the lowest MSE
                r["best"], r["best_mse"], r["best_step"] = r["rows"].detach().clone(), m, step
        progress(step + 1, config.steps)
    results: list[LearnedInstruction | Exception] = []
    for r in runs:
        results.append(r["error"] or LearnedInstruction(
            _states(r, r["best"]).detach(), _states(r, r["rows"]).detach(), uncond.detach(), r["init_text"],
            r["best_step"], r["mse"], r["clip"]))
    return results


def _states(run: dict, rows: torch.Tensor) -> torch.Tensor:
    """c with `rows` in positions 1 … EOT−1 and the init's SOT and EOT onward: (1, L, H)."""
    return torch.cat([run["init"][:, :1], rows, run["init"][:, run["eot"]:]], dim=1)


# ----------------------------------------------------------------------------- the cached step and the method


def init_texts(clip, pairs: list[tuple[Image.Image, Image.Image]], config: VISIIConfig, seeds: list[int]) -> list[str]:
    """Step 1's text for each (A, A′): a PEZ prompt of A′ (seeded by the pair's seed), or with
    init_tokens='added' its tokens that a PEZ prompt of A (seeded by A and the pair's seed) lacks, all
    optimised in one PEZ batch."""
    image_sets = [[a_prime] for _, a_prime in pairs]
    if config.init_tokens == "added":
        image_sets += [[a] for a, _ in pairs]
        seeds = seeds + [content_seed(s, a) for s, (a, _) in zip(seeds, pairs)]
    found = pez_prompts(clip, image_sets, n_tokens=config.pez_tokens, steps=config.pez_steps, seeds=seeds)
    if config.init_tokens == "all":
        return [p.text for p in found]
    afters, befores = found[:len(pairs)], found[len(pairs):]
    return [clip.tokenizer.decode(without(after.token_ids, set(before.token_ids))).strip()
            for after, before in zip(afters, befores)]


def instruction_key(models, a: Image.Image, a_prime: Image.Image, config: VISIIConfig, seed: int) -> tuple:
    return (models.weights_key, config.training_hash(), seed, a, a_prime)


def learned_instructions(models, pairs: list[tuple[Image.Image, Image.Image]], config: VISIIConfig, seed: int,
                         cache: Cache, batch_size: int = 1) -> list[LearnedInstruction | Exception]:
    """Steps 1–4 for many (A, A′), cached by the pair and the training settings (one instruction serves
    every B); those not in the cache get their PEZ init and their training `batch_size` pairs at a time.
    A pair that fails gets its error in its place."""

    def train(chunk: list[int]) -> list[LearnedInstruction | Exception]:
        seeds = [content_seed(seed, *pairs[i]) for i in chunk]
        try:
            inits = init_texts(models.joint_clip, [pairs[i] for i in chunk], config, seeds)
            return train_instructions(models.editor, models.editor_clip,
                                      [(*pairs[i], text, s) for i, text, s in zip(chunk, inits, seeds)], config)
        except Exception as exc:  # the batch failed: each of its pairs carries the reason
            return [exc] * len(chunk)

    keys = [instruction_key(models, a, a_prime, config, seed) for a, a_prime in pairs]
    return cache.many("visii_instruction", keys, train, batch_size)


def prepare_instructions(models, pairs: list[tuple[Image.Image, Image.Image]], config: VISIIConfig, *, seed: int,
                         cache: Cache, batch_size: int) -> list[LearnedInstruction | Exception]:
    """A benchmark's `prepare` hook: every pair's instruction trained `batch_size` at a time into `cache`."""
    return learned_instructions(models, pairs, config, seed, cache, batch_size)


@torch.no_grad()
def apply_instruction(pipe, b: Image.Image, learned: LearnedInstruction, config: VISIIConfig = VISIIConfig(),
                      seed: int = 0, change_map: torch.Tensor | None = None) -> Image.Image:
    """Step 5: B edited by the learned instruction."""
    cond = (learned.best if config.keep == "best" else learned.last).to(pipe.device, pipe.unet.dtype)
    z = edit_latents(pipe, b, cond, learned.uncond.to(pipe.device, pipe.unet.dtype), num_steps=config.num_steps,
                     guidance_scale=config.guidance_scale, image_guidance_scale=config.image_guidance_scale,
                     generator=torch.Generator().manual_seed(seed), change_map=change_map)
    return to_pil(decode_latents(pipe.vae, z))[0]


def visii(models, a: Image.Image, a_prime: Image.Image, b: Image.Image, config: VISIIConfig = VISIIConfig(), *,
          seed: int = 0, cache: Cache | None = None, change_map: torch.Tensor | None = None,
          instruction: str | None = None) -> Image.Image:
    """VISII: the editor instruction learned from (A, A′), applied to B (the written instruction is not used)."""
    learned = single(learned_instructions(models, [(a, a_prime)], config, seed, cache or Cache()))
    return apply_instruction(models.editor, b, learned, config, seed, change_map)
