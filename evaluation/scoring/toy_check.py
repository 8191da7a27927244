"""`analogy toy check`: what the committed toy models can do, read by the judge.

- t2i: one text-to-image sample per caption of the grammar through the
  standard `StableDiffusionPipeline.__call__` (50 DDIM steps, CFG 7.5), split
  into seen and held-out (colour, shape) combinations;
- reconstruction: fresh renders DDIM-inverted (50 steps, CFG 1) with their
  caption and regenerated with the same caption (CFG 1);
- vae: the judge on the VAE's round trips;
- composition: text-to-image from a caption with one attribute appended that contradicts it
  ("a small blue square on a white background, red"): does the appended word win, and is the
  rest kept? What Difference Inversion assumes of a text space: a change appended to any
  prompt acts on it.
- editor: the instruction editor (InstructPix2Pix's `StableDiffusionInstructPix2PixPipeline.__call__`,
  its defaults: 100 steps, text guidance 7.5, image guidance 1.5) on fresh renders with the world's
  instruction for a one-attribute edit: is the attribute changed (`target`), the rest kept (`keep`),
  both (`joint`)? Seen and held-out (colour, shape) targets apart.
- inpainter: Analogist's inpainter (`StableDiffusionInpaintPipeline.__call__`, 50 DDIM steps, CFG 7.5) on
  grids of four fresh renders with the bottom-right cell masked and that cell's caption: does the judge
  read the scene that was there (each attribute, and all four)? The grid layout is an argument (the CLI
  passes `ops.analogist`'s).

The sampler is an argument (the CLI passes `ops.ddim.ddim_reconstruct` and
`ops.ddim.vae_round_trip`): evaluation never imports the methods.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from PIL import Image

from models.loaders import load_editor, load_inpainter, load_judge, load_pipeline
from models.profiles import Profile, get_profile
from models.toy.world import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    all_scenes,
    caption,
    edit_instruction,
    phrase,
    render,
)

# reconstruct(pipe, images, prompts, steps) -> (images, latent RMSE); round_trip(pipe, images) -> images
Reconstruct = Callable[..., tuple[list[Image.Image], float]]
RoundTrip = Callable[..., list[Image.Image]]


def attribute_accuracy(read: list[dict], truth: list[dict]) -> dict[str, float]:
    acc = {name: sum(r[name] == t[name] for r, t in zip(read, truth)) / len(truth) for name in ATTRIBUTE_NAMES}
    acc["all"] = sum(all(r[n] == t[n] for n in ATTRIBUTE_NAMES) for r, t in zip(read, truth)) / len(truth)
    return {k: round(v, 4) for k, v in acc.items()}


def t2i_scores(profile: Profile, steps: int = 50, guidance: float = 7.5, seed: int = 0,
               samples_per_caption: int = 1) -> dict:
    pipe, judge = load_pipeline(profile), load_judge(profile)
    scenes = [s for s in all_scenes() for _ in range(samples_per_caption)]
    generator = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, len(scenes), 128):
        chunk = scenes[start:start + 128]
        images += pipe([caption(s) for s in chunk], num_inference_steps=steps, guidance_scale=guidance,
                       generator=generator).images
    read = judge.read(images)
    out = {}
    for split, held in (("seen", False), ("held_out", True)):
        idx = [i for i, s in enumerate(scenes) if s.held_out == held]
        out[split] = attribute_accuracy([read[i] for i in idx], [scenes[i].as_dict() for i in idx])
    return out


def reconstruction_scores(profile: Profile, reconstruct: Reconstruct, n: int = 64, steps: int = 50,
                          seed: int = 1) -> dict:
    pipe, judge = load_pipeline(profile), load_judge(profile)
    rng = random.Random(seed)
    scenes = [rng.choice(all_scenes()) for _ in range(n)]
    originals = [render(s, rng.randrange(2**31)) for s in scenes]
    rebuilt, latent_rmse = reconstruct(pipe, originals, [caption(s) for s in scenes], steps)
    return attribute_accuracy(judge.read(rebuilt), [s.as_dict() for s in scenes]) | {
        "latent_rmse": round(latent_rmse, 4)}


def vae_scores(profile: Profile, round_trip: RoundTrip, n: int = 256, seed: int = 2) -> dict:
    pipe, judge = load_pipeline(profile), load_judge(profile)
    rng = random.Random(seed)
    scenes = [rng.choice(all_scenes()) for _ in range(n)]
    originals = [render(s, rng.randrange(2**31)) for s in scenes]
    truth = [s.as_dict() for s in scenes]
    return {"originals": attribute_accuracy(judge.read(originals), truth),
            "vae_round_trip": attribute_accuracy(judge.read(round_trip(pipe, originals)), truth)}


def composition_scores(profile: Profile, n: int = 48, steps: int = 50, guidance: float = 7.5, seed: int = 3) -> dict:
    """Per attribute, the share of samples from `caption(S), <phrase of S′>` (S′ = S with that
    attribute changed) that show S′'s value (`appended_wins`) and S′ entirely (`joint`)."""
    pipe, judge = load_pipeline(profile), load_judge(profile)
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        name = ATTRIBUTE_NAMES[i % len(ATTRIBUTE_NAMES)]
        scene = rng.choice(all_scenes())
        new = scene.replace(**{name: rng.choice([v for v in ATTRIBUTES[name] if v != getattr(scene, name)])})
        cases.append((name, new, f"{caption(scene)}, {phrase(new, name)}"))
    images = pipe([text for *_, text in cases], num_inference_steps=steps, guidance_scale=guidance,
                  generator=torch.Generator().manual_seed(seed)).images
    read = judge.read(images)
    out = {}
    for name in ATTRIBUTE_NAMES + ("all",):
        idx = [i for i, c in enumerate(cases) if name in (c[0], "all")]
        out[name] = {"appended_wins": round(sum(read[i][cases[i][0]] == getattr(cases[i][1], cases[i][0])
                                                for i in idx) / len(idx), 4),
                     "joint": round(sum(read[i] == cases[i][1].as_dict() for i in idx) / len(idx), 4)}
    return out


def editor_scores(profile: Profile, n: int = 48, seed: int = 4, **call) -> dict:
    """Per changed attribute (the round-robin of the benchmarks), the share of edits of a fresh render
    by the world's instruction that show the new value (`target`), keep every other attribute (`keep`),
    and both (`joint`); `held_out_joint` over the edits whose target is a held-out (colour, shape).
    `call`: overrides of the pipeline's own defaults."""
    pipe, judge = load_editor(profile), load_judge(profile)
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        name = ATTRIBUTE_NAMES[i % len(ATTRIBUTE_NAMES)]
        scene = rng.choice(all_scenes())
        new = rng.choice([v for v in ATTRIBUTES[name] if v != getattr(scene, name)])
        cases.append((name, scene, scene.replace(**{name: new}), edit_instruction(scene, name, new),
                      render(scene, rng.randrange(2**31))))
    generator = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, n, 32):
        chunk = cases[start:start + 32]
        images += pipe([c[3] for c in chunk], image=[c[4] for c in chunk], generator=generator, **call).images
    read = judge.read(images)
    hits = [(read[i][c[0]] == getattr(c[2], c[0]),
             all(read[i][k] == getattr(c[2], k) for k in ATTRIBUTE_NAMES if k != c[0])) for i, c in enumerate(cases)]
    out = {}
    for name in ATTRIBUTE_NAMES + ("all",):
        idx = [i for i, c in enumerate(cases) if name in (c[0], "all")]
        out[name] = {"target": round(sum(hits[i][0] for i in idx) / len(idx), 4),
                     "keep": round(sum(hits[i][1] for i in idx) / len(idx), 4),
                     "joint": round(sum(all(hits[i]) for i in idx) / len(idx), 4)}
    held = [i for i, c in enumerate(cases) if c[2].held_out]
    out["held_out_joint"] = round(sum(all(hits[i]) for i in held) / len(held), 4) if held else None
    return out


Grid = Callable[[Image.Image, Image.Image, Image.Image], Image.Image]  # (A, A′, B) → the grid, B′ cell black


def inpainter_scores(profile: Profile, grid: Grid, box: tuple[int, int, int, int], mask: Image.Image,
                     n: int = 48, seed: int = 5) -> dict:
    """The share of masked bottom-right cells, inpainted from their caption, in which the judge reads the
    cell's scene: per attribute and `joint` (all four). The cells are fresh renders of four random scenes
    (no analogy among them need be avoided here: nothing is trained). `box`: where the cell's image is."""
    pipe, judge = load_inpainter(profile), load_judge(profile)
    rng = random.Random(seed)
    scenes = [[rng.choice(all_scenes()) for _ in range(4)] for _ in range(n)]
    grids = [grid(*(render(s, rng.randrange(2**31)) for s in four[:3])) for four in scenes]
    generator = torch.Generator().manual_seed(seed)
    images = []
    for start in range(0, n, 16):
        chunk = range(start, min(n, start + 16))
        out = pipe([caption(scenes[i][3]) for i in chunk], image=[grids[i] for i in chunk],
                   mask_image=[mask] * len(chunk), height=grids[0].height, width=grids[0].width,
                   generator=generator).images
        images += [im.crop(box).resize((grids[0].width // 2,) * 2) for im in out]
    read = judge.read(images)
    out = {name: round(sum(read[i][name] == getattr(scenes[i][3], name) for i in range(n)) / n, 4)
           for name in ATTRIBUTE_NAMES}
    out["joint"] = round(sum(read[i] == scenes[i][3].as_dict() for i in range(n)) / n, 4)
    return out


def toy_check(reconstruct: Reconstruct, round_trip: RoundTrip, profile_name: str = "toy",
              inpaint_grid: tuple[Grid, tuple, Image.Image] | None = None) -> dict:
    """Every section; `inpaint_grid` = (grid, box, mask) for the inpainter's (left out without it)."""
    profile = get_profile(profile_name)
    result = {"t2i": t2i_scores(profile), "reconstruction": reconstruction_scores(profile, reconstruct),
              "vae": vae_scores(profile, round_trip), "composition": composition_scores(profile),
              "editor": editor_scores(profile)}
    if inpaint_grid is not None:
        result["inpainter"] = inpainter_scores(profile, *inpaint_grid)
    return result
