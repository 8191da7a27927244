"""Analogist (Gu et al.): solve A : A′ :: B : ? as inpainting of the missing quadrant of a 2×2 grid,
steering the inpainter's attention. As the official code (`analogist.py`, `visual_prompting.py`,
`models/attn_utils.py`) runs it:

    0. the grid: a white square of 2×2 cells (the inpainter's native size), each image resized to the
       cell less 1.5·padding and pasted at the padding, A | A′ over B | (black); then B's whole cell is
       pasted over the B′ cell (the initialisation), and the mask is the B′ cell (bottom right)
    1. the text: a prompt for B′ from the profile's prompter, with the official suffix
       ", best quality, extremely detailed"; against the official negative prompt
    2. the inpainter (9 channels: noisy latent ⊕ mask ⊕ masked-image latent) from the pasted grid noised
       to strength 0.98, DDIM 50 steps, CFG 15, with two attention edits in transformer blocks 3–10 of
       the UNet's 16 (counted in forward order: down, mid, up), at every step and in both CFG branches:
         - self-attention cloning (SAC), on the pre-softmax logits of the self-attention:
               sim[A′ → B′] = s · sim[A → B],   sim[B′ → A′] = s · sim[B → A],   s = 1.3
           (query rows → key columns, position by position within the quadrants)
         - cross-attention masking (CAM), after the softmax of the cross-attention: the text attention
           of every query in the A, A′ and B quadrants set to 0, so the text drives only B′
    3. B′ = the B′ cell of the decoded grid, resized to B's size

The quadrant token indices are computed for each attention resolution from the number of queries
(the official code loads them from a pickle of the same quadrants). The edits are diffusers attention
processors, installed for the call and removed after it, never left on the shared pipeline.

Where ours differs from the official code, and why:
- the sampling loop is diffusers' `StableDiffusionInpaintPipeline` with a DDIM scheduler
  (`models.loaders.load_inpainter` sets it, as the official code does; the official code subclasses
  an older pipeline). For a 9-channel UNet the two run the same steps: the start latent is the pasted grid's
  VAE sample noised to the first timestep with one fresh noise (the official code passes that noise as
  `latents`, which current diffusers would take as the start itself, so ours lets the pipeline draw it
  from the seeded generator), no blending of the unmasked region, the whole grid decoded.
- the official code runs in fp16 on a GPU; ours in the profile's dtype (fp32 on CPU).
- the official script draws 8 images for each of up to 3 prompts; a benchmark row is one B′: one
  image (the seeded generator) of one prompt.
- the official prompt comes from GPT-4V (the DI paper used MiniCPM-V); ours from the profile's VLM
  (`models.profiles.VLM_ID`, Qwen2.5-VL) with the official instruction and marked grid, greedy-decoded;
  the official marks are Arial Bold, ours Pillow's default font. See `prompt_for`.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw, ImageFont

from ops.cache import Cache
from ops.captions import caption

NEGATIVE_PROMPT = "Messy,Disordered,Chaotic,Cluttered,Haphazard,Unkempt,Scattered,Disheveled,Tangled,Random"
PROMPT_SUFFIX = "best quality, extremely detailed"
# The official prompter's instruction (`textual_prompting.py`, as its script runs it): three prompts of at
# most five words for the marked grid, comma-separated
PROMPTER_INSTRUCTION = (
    "Please help me with the image analogy task: take an image A and its transformation A', and provide any image "
    "B to produce an output B' that is analogous to A'. Or, more succinctly: A : A' :: B : B'. You should give me "
    "three most possible text prompts of image B', each prompt should contain no more than 5 words. Please "
    "separate the prompts with comma and format your answer as follows: prompt1, prompt2, prompt3")


@dataclass(frozen=True)
class AnalogistConfig:
    """Defaults: the official `analogist.py` arguments (SD inpainting at 512 px, 16 transformer blocks).
    The toy profile maps the block range onto its 7 blocks (models/profiles.py)."""

    strength: float = 0.98
    guidance_scale: float = 15.0
    num_steps: int = 50
    padding: int = 2
    # self-attention cloning / cross-attention masking: transformer blocks [start, end) in forward order
    sac: bool = True
    sac_start_layer: int = 3
    sac_end_layer: int = 11
    scale_sac: float = 1.3
    cam: bool = True
    cam_start_layer: int = 3
    cam_end_layer: int = 11
    negative_prompt: str = NEGATIVE_PROMPT
    prompt_suffix: str = PROMPT_SUFFIX
    # what the prompter (a VLM; real profiles) is asked, and the most tokens it may answer (the official request's)
    prompter_instruction: str = PROMPTER_INSTRUCTION
    prompter_max_tokens: int = 300
    # B′ read off the grid: "cell" (the whole B′ cell, padding and all: the official crop) | "inner" (the
    # pasted image's square inside it: at 512 px the padding is 1 % of a cell, at the toy's 32 px it is 9 %)
    crop: str = "cell"

    def __post_init__(self):
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.prompter_max_tokens < 1:
            raise ValueError(f"prompter_max_tokens must be ≥ 1, got {self.prompter_max_tokens}")
        if self.crop not in ("cell", "inner"):
            raise ValueError(f"crop must be 'cell' or 'inner', got {self.crop!r}")
        if self.padding < 0 or self.padding % 2:
            raise ValueError(f"padding must be an even number ≥ 0 (the official grid asserts it), got {self.padding}")
        for name in ("sac", "cam"):
            start, end = getattr(self, f"{name}_start_layer"), getattr(self, f"{name}_end_layer")
            if not 0 <= start <= end:
                raise ValueError(f"{name}_start_layer..{name}_end_layer must be 0 ≤ start ≤ end, got {start}..{end}")


# ----------------------------------------------------------------------------- 0. the grid


def cell_layout(cell: int, padding: int) -> tuple[int, int, int]:
    """The grid's geometry: (the side of a pasted image, the offset of the first column/row's image, the
    offset of the second's): each image at the cell less 1.5·padding, pasted at the padding (the second
    one pixel early, as the official `make_grid`)."""
    return int(cell - padding * 1.5), padding, cell + padding - 1


def make_grid(a: Image.Image, a_prime: Image.Image, b: Image.Image, cell: int, padding: int) -> Image.Image:
    """A | A′ over B | black on white, `cell` px per cell (`cell_layout`)."""
    inner, first, second = cell_layout(cell, padding)
    grid = Image.new("RGB", (2 * cell, 2 * cell), (255, 255, 255))
    for image, (x, y) in ((a, (first, first)), (a_prime, (second, first)), (b, (first, second))):
        grid.paste(image.convert("RGB").resize((inner, inner)), (x, y))
    grid.paste(Image.new("RGB", (inner, inner), (0, 0, 0)), (second, second))
    return grid


def b_prime_box(size: int, padding: int, crop: str) -> tuple[int, int, int, int]:
    """Where B′ is read off a grid of side `size`: the whole bottom-right cell, or its pasted square."""
    cell = size // 2
    if crop == "cell":
        return cell, cell, size, size
    inner, _, start = cell_layout(cell, padding)
    return start, start, start + inner, start + inner


def paste_b(grid: Image.Image) -> Image.Image:
    """The initialisation: B's whole cell (bottom left) copied over the B′ cell (bottom right)."""
    cell = grid.width // 2
    pasted = grid.copy()
    pasted.paste(grid.crop((0, cell, cell, 2 * cell)), (cell, cell))
    return pasted


def b_prime_mask(size: int, change_map: torch.Tensor | None = None) -> Image.Image:
    """The fixed mask: white (inpaint) on the bottom-right cell. With a change map (1 = change fully), only
    where the map, resized to the cell, is at least ½: elsewhere the B′ cell keeps B."""
    mask = Image.new("L", (size, size), 0)
    cell = size // 2
    if change_map is None:
        mask.paste(255, (cell, cell, size, size))
    else:
        values = (change_map.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        region = Image.fromarray(values, mode="L").resize((cell, cell), Image.Resampling.BILINEAR)
        mask.paste(region.point(lambda v: 255 if v >= 128 else 0), (cell, cell))
    return mask


# ----------------------------------------------------------------------------- 1. the text




def marked_grid(a: Image.Image, a_prime: Image.Image, b: Image.Image, cell: int, padding: int) -> Image.Image:
    """The grid the prompter reads (the official `make_grid(add_marks=True, add_arrows=True)`): the plain
    grid with a white letter on a black square at each image's corner (A, A', B, B'; 36 px at a 256-px
    cell) and a red arrow across each row's middle (half length cell/10, width cell/64, tip 0.35 of it)."""
    grid = make_grid(a, a_prime, b, cell, padding)
    draw = ImageDraw.Draw(grid)
    _, first, second = cell_layout(cell, padding)
    size = max(1, round(36 * cell / 256))
    font = ImageFont.load_default(size=size)
    for text, (x, y) in (("A", (first, first)), ("A'", (second, first)), ("B", (first, second)),
                         ("B'", (second, second))):
        draw.rectangle([x, y, x + size, y + size], fill=(0, 0, 0))
        draw.text((x + 2, y), text, font=font, fill=(255, 255, 255))
    half, width = cell // 10, max(1, cell // 64)
    for y in (cell // 2, cell // 2 + cell):
        tip, tail = (cell + half, y), (cell - half, y)
        draw.line([tail, tip], fill=(230, 0, 0), width=width)
        barb = 0.35 * 2 * half  # cv2.arrowedLine: barbs of tipLength × the line's length, at ±45°
        for sign in (-1, 1):
            draw.line([tip, (tip[0] - barb * math.cos(math.pi / 4), y + sign * barb * math.sin(math.pi / 4))],
                      fill=(230, 0, 0), width=width)
    return grid


def parse_prompts(answer: str) -> list[str]:
    """The official post-processing: the answer split at commas, each part stripped (empty parts dropped)."""
    prompts = [part.strip() for part in answer.strip().split(",")]
    prompts = [part for part in prompts if part]
    if not prompts:
        raise ValueError(f"Analogist's prompter gave no prompt (answer {answer!r})")
    return prompts


def prompt_for(models, a: Image.Image, a_prime: Image.Image, b: Image.Image, cache: Cache,
               config: AnalogistConfig = AnalogistConfig()) -> str:
    """The prompt of B′: the first of the prompts the profile's VLM prompter writes for the marked grid
    (the official code makes 8 images for each of up to 3; a benchmark row is one B′), its answer cached
    by the model and the images.

    Where the profile has no prompter (the toy world): the words in which caption(A′) differs from
    caption(A), put in their places in caption(B) (the toy captions name the attributes in one order);
    where the captions do not line up word by word, A′'s new words are appended to B's. This stand-in
    reads off the captioner what a VLM reads off the grid: what changed from A to A′, applied to B."""
    vlm = models.prompter
    if vlm is not None:
        cell = native_size(models.inpainter) // 2
        key = (models.weights_key, config.prompter_instruction, config.prompter_max_tokens, cell, config.padding,
               a, a_prime, b)
        answer = cache("analogist_prompt", key,
                       lambda: vlm.ask([marked_grid(a, a_prime, b, cell, config.padding)],
                                       config.prompter_instruction, config.prompter_max_tokens))
        return parse_prompts(answer)[0]
    words = [re.findall(r"\S+", caption(models, image, cache)) for image in (a, a_prime, b)]
    ca, cap, cb = words
    if len(ca) == len(cap) == len(cb):
        return " ".join(wp if wa != wp else wb for wa, wp, wb in zip(ca, cap, cb))
    new = [w for w in cap if w not in ca]
    return " ".join(cb + new)


# ----------------------------------------------------------------------------- 2. the attention edits


def quadrants(n_queries: int, device=None) -> dict[str, torch.Tensor]:
    """Flat token indices (row-major) of the A, A′, B and B′ quadrants of an r×r attention map."""
    r = math.isqrt(n_queries)
    if r * r != n_queries or r % 2:
        raise ValueError(f"an Analogist grid needs square attention maps of even side, got {n_queries} tokens")
    h = r // 2
    rows, cols = torch.arange(h, device=device)[:, None], torch.arange(h, device=device)[None, :]
    at = lambda y, x: ((rows + y) * r + cols + x).flatten()  # noqa: E731
    return {"A": at(0, 0), "A'": at(0, h), "B": at(h, 0), "B'": at(h, h)}


def clone_self_attention(sim: torch.Tensor, q: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
    """SAC on pre-softmax logits (batch·heads, queries, keys), in place: A′→B′ from A→B, B′→A′ from B→A."""
    sim[:, q["A'"][:, None], q["B'"][None, :]] = sim[:, q["A"][:, None], q["B"][None, :]] * scale
    sim[:, q["B'"][:, None], q["A'"][None, :]] = sim[:, q["B"][:, None], q["A"][None, :]] * scale
    return sim


def mask_cross_attention(probs: torch.Tensor, q: dict[str, torch.Tensor]) -> torch.Tensor:
    """CAM on the softmaxed cross-attention, in place: rows of A, A′ and B queries set to 0."""
    probs[:, torch.cat([q["A"], q["A'"], q["B"]])] = 0.0
    return probs


class AnalogistAttnProcessor:
    """Attention with SAC (self-attention) or CAM (cross-attention) for one transformer block; the rest
    is diffusers' plain `AttnProcessor` on token inputs (logits, softmax, values, output projection; a
    transformer block's attention has no group or spatial norm). `capture`: keep the last logits and
    probabilities (for tests)."""

    def __init__(self, sac: bool, cam: bool, scale_sac: float, capture: bool = False):
        self.sac, self.cam, self.scale_sac, self.capture = sac, cam, scale_sac, capture
        self.last: dict[str, torch.Tensor] = {}

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states  # (batch, tokens, channels): a transformer block's attention
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        sim = torch.bmm(query, key.transpose(-1, -2)) * attn.scale
        if attention_mask is not None:
            sim = sim + attn.prepare_attention_mask(attention_mask, context.shape[1], hidden_states.shape[0])
        q = quadrants(query.shape[1], sim.device)
        if self.sac and not is_cross:
            clone_self_attention(sim, q, self.scale_sac)
        probs = sim.softmax(dim=-1)
        if self.cam and is_cross:
            mask_cross_attention(probs, q)
        if self.capture:
            self.last = {"sim": sim.detach().clone(), "probs": probs.detach().clone(), "is_cross": is_cross}
        out = attn.batch_to_head_dim(torch.bmm(probs.to(value.dtype), value))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


_STAGE = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}


def transformer_blocks(unet) -> list[str]:
    """The UNet's transformer blocks (module name prefixes) in forward order: down, mid, up."""
    names = {name.rsplit(".attn", 1)[0] for name in unet.attn_processors if ".transformer_blocks." in name}

    def order(name: str) -> tuple:
        parts = name.split(".")
        numbers = [int(p) for p in parts if p.isdigit()]
        return (_STAGE[parts[0]], *numbers)

    return sorted(names, key=order)


def analogist_processors(unet, config: AnalogistConfig, capture: bool = False) -> dict:
    """A processor map for `unet.set_attn_processor`: Analogist's on the blocks in the SAC/CAM ranges,
    the UNet's current processors elsewhere."""
    processors = dict(unet.attn_processors)
    for index, block in enumerate(transformer_blocks(unet)):
        sac = config.sac and config.sac_start_layer <= index < config.sac_end_layer
        cam = config.cam and config.cam_start_layer <= index < config.cam_end_layer
        if sac:
            processors[f"{block}.attn1.processor"] = AnalogistAttnProcessor(True, False, config.scale_sac, capture)
        if cam:
            processors[f"{block}.attn2.processor"] = AnalogistAttnProcessor(False, True, config.scale_sac, capture)
    return processors


@contextlib.contextmanager
def processors_installed(unet, processors: dict):
    """`with processors_installed(unet, processors) as installed:` the processor map inside the block, the
    UNet's own restored after it (also on an error)."""
    saved = dict(unet.attn_processors)
    unet.set_attn_processor(dict(processors))
    try:
        yield processors
    finally:
        unet.set_attn_processor(saved)


def attention_edits(unet, config: AnalogistConfig, capture: bool = False):
    """`with attention_edits(unet, config) as installed:` Analogist's processors inside the block, the UNet's
    own restored after it (also on an error)."""
    return processors_installed(unet, analogist_processors(unet, config, capture))


# ----------------------------------------------------------------------------- the method


def native_size(pipe) -> int:
    """The inpainter's native grid side in pixels (512 for SD inpainting, 64 for the toy)."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


@torch.no_grad()
def sample_grid(pipe, grid: Image.Image, prompt: str, config: AnalogistConfig, seed: int = 0,
                change_map: torch.Tensor | None = None, **pipe_kwargs) -> Image.Image:
    """The pasted grid inpainted in its B′ cell (where the change map allows) with the UNet's processors as
    they are; `pipe_kwargs` go to the pipeline (e.g. `callback_on_step_end`)."""
    size = grid.width
    return pipe(prompt, image=grid, mask_image=b_prime_mask(size, change_map), height=size, width=size,
                strength=config.strength, num_inference_steps=config.num_steps,
                guidance_scale=config.guidance_scale, negative_prompt=config.negative_prompt,
                generator=torch.Generator().manual_seed(seed), **pipe_kwargs).images[0]


def inpaint_grid(pipe, grid: Image.Image, prompt: str, config: AnalogistConfig, seed: int = 0,
                 change_map: torch.Tensor | None = None) -> Image.Image:
    """Step 2: `sample_grid` under the attention edits."""
    with attention_edits(pipe.unet, config):
        return sample_grid(pipe, grid, prompt, config, seed, change_map)


def analogist(models, a: Image.Image, a_prime: Image.Image, b: Image.Image, config: AnalogistConfig = AnalogistConfig(),
              *, seed: int = 0, cache: Cache | None = None, change_map: torch.Tensor | None = None,
              instruction: str | None = None) -> Image.Image:
    """Analogist: B′ inpainted as the fourth cell of the A | A′ / B | ? grid (the written instruction is
    not used: the prompt comes from the prompter, as the official code's from GPT-4V). A change map
    narrows the mask inside the B′ cell."""
    pipe, cache = models.inpainter, cache or Cache()
    # 0. the grid, B pasted into the B′ cell
    grid = paste_b(make_grid(a, a_prime, b, native_size(pipe) // 2, config.padding))
    # 1. the text
    prompt = prompt_for(models, a, a_prime, b, cache, config)
    if config.prompt_suffix:
        prompt = f"{prompt}, {config.prompt_suffix}"
    # 2. inpainting under SAC and CAM
    out = inpaint_grid(pipe, grid, prompt, config, seed, change_map)
    # 3. B′: the B′ cell (or its inner square)
    return out.crop(b_prime_box(grid.width, config.padding, config.crop)).resize(b.size)
