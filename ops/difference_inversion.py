"""Difference Inversion (Kim et al.): learn D̃, a few tokens holding only what changed
from A to A′, and apply it to B with the diffusion model. Read top to bottom in
`difference_inversion`:

    1. captions of A and A′                         (the profile's captioner)
    2. CLIP deltas Dimg, Dtxt → Dinter = slerp      (ops.deltas)
    3. hard prompts of A, A′ and B                  (PEZ, or the captions' token ids)
    4. DIFF tokens D̃ from (A, A′)                   (ops.diff_tokens)
    5. B′: DDIM-invert B with prompt_B, denoise with [SOT, prompt_B, D̃, EOT]
       (placement='prepend': [SOT, D̃, prompt_B, EOT], a switch; changed_tokens='drop', a switch:
       the words the change replaces are left out beside D̃: from A's prompt and B's the tokens A′'s
       prompt lacks, from A′'s those A's lacks)

Every step is cached by content (images, model ids, the settings it depends on,
the seed): one D̃ serves every B, a sweep of generation settings trains nothing
twice, and the pipeline's assets run the same step functions through the same
cache, so the `generations` asset finds what `diff_tokens` stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from PIL import Image

from ops.cache import Cache, config_hash, content_seed, single
from ops.captions import caption
from ops.ddim import Schedule, ddim_invert, ddim_sample, decode_latents, encode_images, encode_views
from ops.deltas import DELTA_KINDS, TEXT_DELTA_SOURCES, Deltas, clip_deltas
from ops.diff_tokens import (
    DiffTokens,
    PairInputs,
    changed_tokens,
    generation_prompt,
    train_diff_tokens_batch,
    with_tokens,
)
from ops.images import to_pil
from ops.pez import HardPrompt, pez_prompts
from ops.text import DiffusionText

# Settings that change only step 5 (generation); every other field changes D̃.
GENERATION_FIELDS = ("num_steps", "guidance_scale", "inversion_steps")


@dataclass(frozen=True)
class DIConfig:
    """Every switch of the method and its ablations; defaults = the paper (SD 2.1 base).
    The toy profile overrides a few (models/profiles.py)."""

    # 2. deltas
    delta: str = "interpolated"  # interpolated | image | text
    alpha: float = 0.8  # slerp(Dimg, Dtxt; α), 1 = pure text delta
    # Dtxt from "captions" (the paper's: n(ET(capA′)) − n(ET(capA))) | "added": n(ET(the words capA′ adds
    # to capA)), a target that A′'s own words meet (ops.deltas.TEXT_DELTA_SOURCES; on the toy it beat the
    # captions' difference 20–7 and made the CLIP loss matter: docs/results.md#di-switches)
    text_delta_source: str = "captions"
    # 3. prompts
    prompt_source: str = "pez"  # pez | caption (the paper's faster variant)
    pez_tokens: int = 10
    pez_steps: int = 3000
    # 4. DIFF tokens
    n_tokens: int = 5
    steps: int = 3000
    lr: float = 0.1
    weight_decay: float = 0.1
    # the frozen models' forward passes in DIFF training: "fp32" (the paper's code path, and every
    # CPU result here) | "bf16" (torch.autocast; D̃ and AdamW stay fp32), for GPUs
    precision: str = "fp32"
    lambda_tc: float = 0.01
    lambda_clip: float = 6.0
    token_consistency: bool = True
    clip_loss: bool = True
    # zero | random (random vocabulary rows, seeded) | added: the rows of the tokens A′'s prompt adds to A's
    # (`changed_tokens`' second set, in A′'s order, the rest zero): D̃ starts at the words of the new value
    init: str = "zero"
    negation: str = "negate"  # negate | remove (D̃ absent from `before`)
    # what D̃ is trained on: "none" (the paper's: E(A), E(A′) as they are) | "shift": each step one of ten
    # views of the pair, the same for A and A′ (as is, mirrored, each moved by 1/16 of the side
    # left/right/up/down; ops.images.shifted_views): D̃ cannot hold where the pair's content is drawn,
    # only what changed. Diffusion Image Analogies augments its inversion the same way (flips, shifts)
    augment: str = "none"
    # where D̃ sits: after the prompt (the paper's [SOT, prompt, D̃, EOT]) | before it ([SOT, D̃, prompt, EOT]),
    # in training and in generation alike
    placement: str = "append"
    # what the CLIP loss reads D̃ in: "none" = D̃ alone, [SOT, D̃, EOT] (the paper's) | "b" = B's prompt,
    # the delta ET([SOT, prompt(B), D̃, EOT]) − ET([SOT, prompt(B), EOT]) against Dinter. With "b" D̃
    # depends on B too (trained per triplet, not once per pair): on the toy the paper's term prefers
    # a D̃ that also carries A's other attributes, the in-context one penalises it (on the toy it gained
    # nothing, 3–4 on 24 triplets: docs/results.md#di-switches)
    clip_context: str = "none"
    # the prompt tokens the change replaces (A's prompt has them, A′'s not, or the reverse): "keep" (the
    # paper's) | "drop": A's prompt without the tokens A′'s lacks, A′'s without those A's lacks, in
    # training, and B's without the first in generation (B is still inverted under its whole prompt). D̃
    # then supplies the changed value beside the rest of the prompt instead of overriding the word for
    # the old one, which on the toy, whose UNet keeps a word's first mention, an appended row rarely can
    # (0.781 against 0.500, paired 10–1: docs/results.md#di-switches)
    changed_tokens: str = "keep"
    # 5. generation: DDIM, CFG; invert through `inversion_steps` of the `num_steps` and denoise them back
    # (45 = the default reading of "start step 45 out of 50"; 5 = the other reading)
    num_steps: int = 50
    guidance_scale: float = 7.5
    inversion_steps: int = 45

    def __post_init__(self):
        choices = {"delta": DELTA_KINDS, "text_delta_source": TEXT_DELTA_SOURCES,
                   "prompt_source": ("pez", "caption"), "init": ("zero", "random", "added"),
                   "negation": ("negate", "remove"), "augment": ("none", "shift"), "precision": ("fp32", "bf16"),
                   "placement": ("append", "prepend"), "clip_context": ("none", "b"),
                   "changed_tokens": ("keep", "drop")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not (self.token_consistency or self.clip_loss):
            raise ValueError("with both token consistency and the CLIP loss off there is nothing to train")
        if not 1 <= self.inversion_steps <= self.num_steps:
            raise ValueError(f"inversion_steps must be in 1..{self.num_steps}, got {self.inversion_steps}")

    @property
    def pair_roles(self) -> tuple[str, ...]:
        """The images one D̃ is trained from: (A, A′), and B with clip_context='b'."""
        return ("a", "a_prime", "b") if self.clip_context == "b" else ("a", "a_prime")

    @property
    def delta_settings(self) -> tuple[float, str]:
        """What step 2's CLIP deltas depend on beside the models and (A, A′): (alpha, text_delta_source)."""
        return self.alpha, self.text_delta_source

    def training_hash(self) -> str:
        """What D̃ depends on: every setting but the generation ones."""
        return config_hash({k: v for k, v in asdict(self).items() if k not in GENERATION_FIELDS})


# The paper's ablations: each a preset of DIConfig, registered as a method of its own.
ABLATIONS = {
    "di_no_token_consistency": {"token_consistency": False},
    "di_no_clip_loss": {"clip_loss": False},
    "di_image_delta": {"delta": "image"},
    "di_text_delta": {"delta": "text"},
    "di_random_init": {"init": "random"},
    "di_remove_negation": {"negation": "remove"},
    "di_caption_prompts": {"prompt_source": "caption"},
}


# ----------------------------------------------------------------------------- the cached steps


def prompt(models, image: Image.Image, config: DIConfig, seed: int, cache: Cache) -> HardPrompt:
    """Step 3 for one image: its PEZ hard prompt, or (prompt_source='caption') its caption's token ids."""
    return single(prompts(models, [image], config, seed, cache))


def _pez_key(models, image: Image.Image, config: DIConfig, seed: int) -> tuple:
    return (models.weights_key, config.pez_tokens, config.pez_steps, seed, image)


def prompts(models, images: list[Image.Image], config: DIConfig, seed: int, cache: Cache,
            batch_size: int = 1) -> list[HardPrompt | Exception]:
    """Step 3 for many images: PEZ prompts not in the cache are optimised `batch_size` at a time
    (ops.pez.pez_prompts: each as if alone, to float rounding), once per distinct image; an image
    that fails gets its error in its place."""
    if config.prompt_source == "caption":
        def from_caption(image: Image.Image) -> HardPrompt | Exception:
            try:
                text = caption(models, image, cache)
            except Exception as exc:  # one bad image fails alone
                return exc
            return HardPrompt(models.pipeline.tokenizer(text, add_special_tokens=False).input_ids, text, float("nan"))

        return [from_caption(image) for image in images]

    def optimise(chunk: list[int]) -> list[HardPrompt | Exception]:
        try:
            return pez_prompts(models.joint_clip, [[images[i]] for i in chunk], n_tokens=config.pez_tokens,
                               steps=config.pez_steps, seeds=[content_seed(seed, images[i]) for i in chunk])
        except Exception as exc:  # the batch failed: each of its images carries the reason
            return [exc] * len(chunk)

    return cache.many("pez_prompt", [_pez_key(models, image, config, seed) for image in images], optimise,
                      batch_size)


def deltas_key(models, a: Image.Image, a_prime: Image.Image, config: DIConfig) -> tuple:
    return (models.weights_key, *config.delta_settings, a, a_prime)


def deltas(models, a: Image.Image, a_prime: Image.Image, config: DIConfig, cache: Cache) -> Deltas:
    """Step 2: the CLIP deltas of (A, A′) from their images and (step 1) captions."""
    return cache("clip_deltas", deltas_key(models, a, a_prime, config), lambda: clip_deltas(
        models.joint_clip, a, a_prime, caption(models, a, cache), caption(models, a_prime, cache), alpha=config.alpha,
        text_source=config.text_delta_source))


def diff_tokens_key(models, a: Image.Image, a_prime: Image.Image, config: DIConfig, seed: int,
                    b: Image.Image | None = None) -> tuple:
    """What D̃ depends on: (A, A′), the training settings and the seed, and B where the CLIP loss reads
    D̃ in B's prompt (clip_context='b')."""
    key = (models.weights_key, config.training_hash(), seed, a, a_prime)
    if config.clip_context == "b":
        if b is None:
            raise ValueError("clip_context='b' trains D̃ for a triplet: B is needed")
        key += (b,)
    return key


def diff_tokens(models, a: Image.Image, a_prime: Image.Image, prompt_a: list[int], prompt_a_prime: list[int],
                target: torch.Tensor, config: DIConfig, seed: int, cache: Cache,
                b: Image.Image | None = None, prompt_b: list[int] | None = None) -> DiffTokens:
    """Step 4: D̃ of (A, A′) from the prompt ids of A and A′ and the target delta. Cached by
    (A, A′) and the training settings (which determine the prompts and the delta); with
    clip_context='b' also by B, whose prompt ids the CLIP loss reads D̃ in."""
    return single(diff_tokens_batch(models, [(a, a_prime, prompt_a, prompt_a_prime, target, b, prompt_b)], config,
                                    seed, cache))


def pair_latents(pipe, a: Image.Image, a_prime: Image.Image, config: DIConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """E(A) and E(A′) as DIFF training reads them: (1, C, h, w) each, or with augment='shift' the
    pair's ten views (10, C, h, w) each, view k of A beside view k of A′."""
    encode = encode_views if config.augment == "shift" else encode_images  # (2V, C, h, w): A's, then A′'s
    z_a, z_a_prime = encode(pipe, [a, a_prime]).chunk(2)
    return z_a, z_a_prime


def diff_tokens_batch(models, pairs: list[tuple], config: DIConfig, seed: int, cache: Cache,
                      batch_size: int = 1) -> list[DiffTokens | Exception]:
    """Step 4 for many pairs: `pairs` = [(A, A′, prompt ids of A, of A′, target delta, B, prompt ids
    of B)] (B and its prompt: None unless clip_context='b'). Those not in the cache train
    `batch_size` at a time (ops.diff_tokens.train_diff_tokens_batch: each D̃ as if trained alone, to
    float rounding), once per distinct key; a pair that diverges gets its error in its place."""

    def train(chunk: list[int]) -> list[DiffTokens | Exception]:
        pipe, inputs = models.pipeline, []
        for i in chunk:
            a, a_prime, prompt_a, prompt_a_prime, target, _, prompt_b = pairs[i]
            z_a, z_a_prime = pair_latents(pipe, a, a_prime, config)
            inputs.append(PairInputs(z_a, z_a_prime, prompt_a, prompt_a_prime, target, content_seed(seed, a, a_prime),
                                     prompt_b))  # read only with clip_context='b'
        return train_diff_tokens_batch(pipe, models.joint_clip, inputs, config)

    keys = [diff_tokens_key(models, a, a_prime, config, seed, b) for a, a_prime, _, _, _, b, _ in pairs]
    return cache.many("diff_tokens", keys, train, batch_size)


def prepare_diff_tokens(models, pairs: list[tuple[Image.Image, ...]], config: DIConfig, *, seed: int,
                        cache: Cache, batch_size: int) -> list[DiffTokens | Exception]:
    """Steps 1–4 for many (A, A′) at once, D̃ trained `batch_size` pairs at a time, into `cache`:
    what `difference_inversion` then finds for every triplet (a benchmark's `prepare` hook).
    `pairs`: (A, A′), or (A, A′, B) triplets where D̃ depends on B (clip_context='b').
    A pair that fails gets its error in its place; the method raises it for that triplet."""
    results: list[DiffTokens | Exception | None] = [None] * len(pairs)
    width = len(config.pair_roles)
    with_b = width == 3
    if any(len(pair) < width for pair in pairs):
        raise ValueError("clip_context='b' trains one D̃ per triplet: give (A, A′, B), not (A, A′)")
    found = prompts(models, [image for pair in pairs for image in pair[:width]], config, seed, cache, batch_size)
    jobs, ready = [], []
    for i, pair in enumerate(pairs):
        a, a_prime, b = pair[0], pair[1], pair[2] if with_b else None
        mine = found[width * i: width * (i + 1)]
        try:
            target = deltas(models, a, a_prime, config, cache).pick(config.delta)
            for p in mine:
                if isinstance(p, Exception):
                    raise p
        except Exception as exc:  # one bad pair fails alone
            results[i] = exc
            continue
        prompt_b = mine[2].token_ids if with_b else None
        jobs.append((a, a_prime, mine[0].token_ids, mine[1].token_ids, target, b, prompt_b))
        ready.append(i)
    for i, result in zip(ready, diff_tokens_batch(models, jobs, config, seed, cache, batch_size)):
        results[i] = result
    return results


@torch.no_grad()
def apply_difference(pipe, b: Image.Image, prompt_b: list[int], tokens: torch.Tensor,
                     config: DIConfig = DIConfig(), change_map: torch.Tensor | None = None,
                     progress=None, removed: set[int] = frozenset()) -> Image.Image:
    """Step 5: B′ from B, B's prompt ids and D̃. `removed`: the token ids the change replaces
    (those of A's prompt that A′'s lacks), left out of B's prompt beside D̃ with changed_tokens='drop'.

    With `change_map` (1 = change fully, 0 = keep) the difference is applied
    only there, Differential-Diffusion style, re-injecting B's own inversion
    trajectory where it must be kept."""
    text = DiffusionText(pipe)  # one text encoder, or SDXL's two
    ids_b = torch.tensor(prompt_b)

    # 5a. E(B)
    z0 = encode_images(pipe, [b])
    # 5b. conditionings: B's prompt alone (inversion), with D̃ (generation; 'drop': without the removed
    #     tokens), and Tsd("") for CFG
    cond_b = text.encode([[ids_b]])
    beside = torch.tensor(generation_prompt(prompt_b, removed, config.changed_tokens))
    cond_diff = text.encode([with_tokens(beside, tokens.to(text.device), config.placement)])
    uncond = text.unconditional()
    # 5c. DDIM-invert B through `inversion_steps` levels (CFG 1)
    schedule = Schedule(pipe.scheduler, config.num_steps)
    trajectory = ddim_invert(text.unet, z0, cond_b, schedule, config.inversion_steps)
    start = config.num_steps - config.inversion_steps
    # 5d. denoise with the DIFF conditioning and CFG
    keep = None
    if change_map is not None:
        keep = {config.num_steps - i: z for i, z in enumerate(trajectory)}  # level → latent
    z = ddim_sample(text.unet, trajectory[-1], start, cond_diff, schedule, uncond, config.guidance_scale,
                    change_map=change_map, keep_latents=keep, progress=progress)
    # 5e. decode
    return to_pil(decode_latents(pipe.vae, z))[0]


# ----------------------------------------------------------------------------- the method


def difference_inversion(models, a: Image.Image, a_prime: Image.Image, b: Image.Image,
                         config: DIConfig = DIConfig(), *, seed: int = 0, cache: Cache | None = None,
                         change_map: torch.Tensor | None = None, instruction: str | None = None) -> Image.Image:
    """Difference Inversion: B′ from (A, A′, B). `seed` seeds PEZ and D̃ (with the images' content)."""
    pipe, cache = models.pipeline, cache or Cache()
    # 1–2. captions of A and A′ → the CLIP deltas → the target of the CLIP loss
    target = deltas(models, a, a_prime, config, cache).pick(config.delta)
    # 3. hard prompts of A, A′ and B
    prompt_a, prompt_a_prime, prompt_b = (prompt(models, image, config, seed, cache).token_ids
                                          for image in (a, a_prime, b))
    # 4. D̃ (depends on (A, A′) only: one D̃ serves every B; with clip_context='b' on B too)
    tokens = diff_tokens(models, a, a_prime, prompt_a, prompt_a_prime, target, config, seed, cache,
                         b, prompt_b).tokens
    # 5. B′ (with changed_tokens='drop', B's prompt beside D̃ loses the tokens the change removes from A's)
    return apply_difference(pipe, b, prompt_b, tokens, config, change_map,
                            removed=changed_tokens(prompt_a, prompt_a_prime)[0])
