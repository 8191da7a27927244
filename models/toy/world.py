"""The toy world: coloured shapes on backgrounds, captions from a small grammar,
and seeded analogy triplets with ground truth; and its textured variant (blobs on the
background) for Differential Diffusion's reliability score.

Everything here is deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 32
_SUPERSAMPLE = 4

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (45, 75, 225),
    "yellow": (240, 215, 30),
    "purple": (145, 50, 185),
    "orange": (245, 135, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "grey": (125, 125, 125),
    "black": (15, 15, 15),
}
SIZES: dict[str, float] = {"small": 0.22, "large": 0.38}  # radius as a fraction of the side

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "size": tuple(SIZES),
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "background": tuple(BACKGROUNDS),
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)

# (colour, shape) pairs that no method-side model is trained on; only the judge sees them.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("red", "star"), ("green", "cross"), ("blue", "triangle"),
     ("yellow", "circle"), ("purple", "square"), ("orange", "star")}
)


@dataclass(frozen=True)
class Scene:
    """One point of the domain: a value for every attribute."""

    size: str
    colour: str
    shape: str
    background: str

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ATTRIBUTE_NAMES}

    def replace(self, **changes: str) -> Scene:
        return Scene(**{**self.as_dict(), **changes})

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT


def all_scenes() -> list[Scene]:
    return [Scene(*values) for values in itertools.product(*ATTRIBUTES.values())]


def training_scenes() -> list[Scene]:
    """Scenes the method-side models (joint CLIP, VAE, UNet) may see."""
    return [s for s in all_scenes() if not s.held_out]


def caption(scene: Scene) -> str:
    return f"a {scene.size} {scene.colour} {scene.shape} on a {scene.background} background"


def varied_caption(scene: Scene, rng: random.Random, drop: float = 0.0) -> str:
    """A caption as people write them: the attribute phrases in any order, each one left
    out with probability `drop` (one always stays). `caption` is the canonical order, the
    one the captioner and the judge use; models trained on both read an attribute
    wherever it stands in the prompt, as real text encoders do."""
    phrases = {"size": scene.size, "colour": scene.colour, "shape": scene.shape,
               "background": f"on a {scene.background} background"}
    names = [name for name in ATTRIBUTE_NAMES if rng.random() >= drop] or [rng.choice(ATTRIBUTE_NAMES)]
    rng.shuffle(names)
    text = ", ".join(phrases[name] for name in names)
    return text if text.startswith("on ") else f"a {text}"


def phrase(scene: Scene, attribute: str) -> str:
    """The words that name one attribute of a scene in its captions ("red", "on a black background")."""
    value = getattr(scene, attribute)
    return f"on a {value} background" if attribute == "background" else value


def corrected_caption(scene: Scene, rng: random.Random, drop: float = 0.0) -> str:
    """A caption that says one attribute twice, the last word winning.

    It is another scene's caption followed by ", <this scene's phrase>". The other scene is this
    one with one attribute set to another value. Its caption is canonical or, half the time, a
    `varied_caption`, which may leave that attribute out. So "a small blue square on a white
    background, red" names the small *red* square on white. People edit prompts this way: a word
    appended to a prompt changes it. Difference Inversion assumes a text side that works like this,
    because its D̃ is appended to B's prompt. The experimental `corrected` training stage fine-tunes
    the UNet on some of these captions (models/toy/MODEL_CARD.md, "Corrected captions")."""
    name = rng.choice(ATTRIBUTE_NAMES)
    other = scene.replace(**{name: rng.choice([v for v in ATTRIBUTES[name] if v != getattr(scene, name)])})
    base = caption(other) if rng.random() < 0.5 else varied_caption(other, rng, drop)
    return f"{base}, {phrase(scene, name)}"


def all_captions() -> list[str]:
    return [caption(s) for s in all_scenes()]


def parse_caption(text: str) -> Scene | None:
    words = text.strip().split()
    if len(words) != 8 or words[0] != "a" or words[4:6] != ["on", "a"] or words[7] != "background":
        return None
    _, size, colour, shape, _, _, background, _ = words
    scene = Scene(size, colour, shape, background)
    for name, value in scene.as_dict().items():
        if value not in ATTRIBUTES[name]:
            return None
    return scene


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def rotated(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]

    if shape == "square":
        h = r * 0.85
        return rotated([(-h, -h), (h, -h), (h, h), (-h, h)])
    if shape == "triangle":
        return rotated([(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)])
    if shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
        return rotated(pts)
    if shape == "cross":
        w = r * 0.36
        return rotated([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r),
                        (-w, w), (-r, w), (-r, -w), (-w, -w)])
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, seed: int) -> Image.Image:
    """Render a scene as a 32×32 RGB image. `seed` sets the nuisance variables
    (position jitter, rotation, slight colour noise), never an attribute."""
    rng = random.Random(seed)
    side = IMAGE_SIZE * _SUPERSAMPLE
    jitter = lambda scale: rng.uniform(-scale, scale)  # noqa: E731
    bg = tuple(int(min(255, max(0, c + jitter(6)))) for c in BACKGROUNDS[scene.background])
    fg = tuple(int(min(255, max(0, c + jitter(10)))) for c in COLOURS[scene.colour])
    r = SIZES[scene.size] * side * (1 + jitter(0.06))
    cx = side / 2 + jitter(0.08 * side)
    cy = side / 2 + jitter(0.08 * side)
    angle = math.radians(jitter(12))
    image = Image.new("RGB", (side, side), bg)
    draw = ImageDraw.Draw(image)
    if scene.shape == "circle":
        draw.ellipse([cx - r * 0.9, cy - r * 0.9, cx + r * 0.9, cy + r * 0.9], fill=fg)
    else:
        draw.polygon(_shape_points(scene.shape, cx, cy, r, angle), fill=fg)
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)


def render_textured(scene: Scene, seed: int) -> Image.Image:
    """`render(scene, seed)` with 8–14 soft blobs of a lighter or darker shade on the background
    (never on the shape): the *textured* world, with content in every column as a photo has, for
    Differential Diffusion's reliability score (its models: `models/toy/weights/textured`). The
    blobs are nuisance, never an attribute."""
    image = np.asarray(render(scene, seed), dtype=np.int16)
    rng = random.Random(f"texture:{seed}")
    bg = np.array(BACKGROUNDS[scene.background])
    layer = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), tuple(int(c) for c in bg))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(8, 14)):
        x, y, r = rng.uniform(0, IMAGE_SIZE), rng.uniform(0, IMAGE_SIZE), rng.uniform(1.5, 3.5)
        direction = -1 if bg.mean() > 170 else 1 if bg.mean() < 85 else rng.choice((-1, 1))
        shade = np.clip(bg + direction * rng.uniform(45, 95), 0, 255).astype(int)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in shade))
    on_background = np.abs(image - bg).sum(-1, keepdims=True) < 40
    return Image.fromarray(np.where(on_background, np.asarray(layer), image).astype(np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


INSTRUCTIONS = {
    "colour": "make the {old} {shape} {new}",
    "shape": "turn the {old} into a {new}",
    "background": "change the background to {new}",
    "size": "make the {shape} {new}",
}


def edit_instruction(scene: Scene, changed: str, new: str) -> str:
    """The edit text that turns `scene` into `scene.replace(changed=new)` ("make the red star blue");
    a triplet's instruction is B's, whose value of the changed attribute is A's."""
    return INSTRUCTIONS[changed].format(old=getattr(scene, changed), new=new, shape=scene.shape)


def edits(scenes: list[Scene]) -> list[tuple[Scene, str, str]]:
    """Every one-attribute edit (scene, changed attribute, new value) between two of `scenes`."""
    allowed = set(scenes)
    return [(s, name, value) for s in scenes for name in ATTRIBUTE_NAMES for value in ATTRIBUTES[name]
            if value != getattr(s, name) and s.replace(**{name: value}) in allowed]


@dataclass(frozen=True)
class Triplet:
    """A : A′ :: B : B′gt, with the attribute that changes."""

    triplet_id: str
    changed: str
    a: Scene
    a_prime: Scene
    b: Scene
    b_prime_gt: Scene
    seed_a: int
    seed_b: int

    @property
    def instruction(self) -> str:
        return edit_instruction(self.b, self.changed, getattr(self.a_prime, self.changed))

    def images(self, textured: bool = False) -> dict[str, Image.Image]:
        """The four images; `textured`: `render_textured`'s (each pair shares its blobs, as it shares its seed)."""
        draw = render_textured if textured else render
        return {
            "a": draw(self.a, self.seed_a),
            "a_prime": draw(self.a_prime, self.seed_a),
            "b": draw(self.b, self.seed_b),
            "b_prime_gt": draw(self.b_prime_gt, self.seed_b),
        }


def make_triplets(seed: int, n: int, changes: tuple[str, ...] = ATTRIBUTE_NAMES) -> list[Triplet]:
    """Seeded analogy triplets, the changed attribute taken round-robin so every
    attribute is equally represented. B shares A's value of the changed
    attribute and differs from A in at least one other attribute."""
    rng = random.Random(f"toy-triplets:{seed}")
    triplets = []
    for i in range(n):
        changed = changes[i % len(changes)]
        a = Scene(*(rng.choice(ATTRIBUTES[name]) for name in ATTRIBUTE_NAMES))
        new_value = rng.choice([v for v in ATTRIBUTES[changed] if v != getattr(a, changed)])
        while True:
            b = Scene(*(rng.choice(ATTRIBUTES[name]) for name in ATTRIBUTE_NAMES))
            b = b.replace(**{changed: getattr(a, changed)})
            if b != a:
                break
        triplets.append(
            Triplet(
                triplet_id=f"toy-s{seed}-{i:05d}",
                changed=changed,
                a=a,
                a_prime=a.replace(**{changed: new_value}),
                b=b,
                b_prime_gt=b.replace(**{changed: new_value}),
                seed_a=rng.randrange(2**31),
                seed_b=rng.randrange(2**31),
            )
        )
    return triplets


def triplet_rows(triplets: list[Triplet], textured: bool = False) -> list[dict]:
    """Rows of the triplet table: ids, attributes (JSON), instruction and PNG bytes (`textured` renders)."""
    rows = []
    for t in triplets:
        images = t.images(textured)
        rows.append(
            {
                "triplet_id": t.triplet_id,
                "changed": t.changed,
                "instruction": t.instruction,
                **{f"{k}_png": png_bytes(img) for k, img in images.items()},
                **{
                    f"{k}_attrs": json.dumps(getattr(t, k).as_dict(), sort_keys=True)
                    for k in ("a", "a_prime", "b", "b_prime_gt")
                },
            }
        )
    return rows
