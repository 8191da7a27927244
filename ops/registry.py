"""The analogy methods the pipeline and the CLI can run, by name.

A method is a function `(ctx, a, a_prime, b, **config) -> PIL.Image` (B′).
It gets its models through `ctx` (loaded lazily, cached per process), its
randomness from `ctx.seed` and reports through `ctx.log`. Its registration
declares the config defaults (the paper's values) and what it `needs`, so the
pipeline can tell GPU-bound methods from cheap ones.

Register a method in its own module with `@register(...)`, or here with a
"module:function" string so that importing the registry stays cheap:

    register("difference_inversion", "ops.difference_inversion:generate",
             needs=("pipeline", "joint_clip", "captioner"), defaults={"alpha": 0.8, ...}, default=True)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections.abc import Callable, Hashable, MutableMapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from PIL import Image

MethodFn = Callable[..., Image.Image]

# Needs that mean "runs a diffusion model": assets running such methods take the `gpu` pool.
GPU_NEEDS = frozenset({"pipeline", "instruct_pipeline", "inpaint_pipeline", "captioner"})


@dataclass
class MethodContext:
    """What a method may use besides its inputs: models (lazily), a seed, a logger."""

    profile_name: str = "toy"
    seed: int = 0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("analogy.methods"))
    device: str | None = None  # None → cuda if available, else cpu
    # Intermediate results keyed by content (image hashes, model ids, config hashes), shared by every
    # context made with `for_triplet`: one D̃ serves every B, a sweep of generation settings retrains
    # nothing. Orchestration may pre-fill it from stored assets; it lives as long as the context.
    memo: MutableMapping = field(default_factory=dict, repr=False)
    # The triplet's edit instruction where the dataset has one (text-guided baselines use it,
    # falling back to A′'s caption); analogy methods ignore it.
    instruction: str | None = None

    def for_triplet(self, seed: int | None = None, instruction: str | None = None) -> MethodContext:
        """The same models and memo, the seed (unchanged if None) and instruction of one triplet."""
        return replace(self, seed=self.seed if seed is None else seed, instruction=instruction)

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    @cached_property
    def profile(self):
        from models.profiles import get_profile

        return get_profile(self.profile_name)

    @property
    def pipeline(self):
        """The profile's diffusers pipeline (DDIM scheduler, frozen)."""
        from models.loaders import load_pipeline

        return load_pipeline(self.profile, self.device)

    @property
    def joint_clip(self):
        """The CLIP whose text tower shares the diffusion text encoder's token table."""
        from models.loaders import load_clip

        return load_clip(self.profile.joint_clip, self.device)

    @property
    def captioner(self):
        from models.loaders import load_captioner

        return load_captioner(self.profile)

    def generator(self, device: str | None = None):
        """A torch.Generator seeded from `seed`, for reproducible noise."""
        import torch

        return torch.Generator(device or "cpu").manual_seed(self.seed)


@dataclass(frozen=True)
class Method:
    name: str
    target: MethodFn | str  # the function, or "module:function" imported on first use
    defaults: dict[str, Any] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    default: bool = False  # part of a run when no method list is given
    description: str = ""

    @property
    def fn(self) -> MethodFn:
        if callable(self.target):
            return self.target
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def uses_gpu(self) -> bool:
        return bool(self.needs & GPU_NEEDS)

    def resolve(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with `overrides`; unknown keys are an error, not a silent no-op."""
        overrides = overrides or {}
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise ValueError(f"method {self.name!r} has no option(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        return {**self.defaults, **overrides}

    def config_hash(self, config: dict[str, Any]) -> str:
        """Names the outputs of (method, resolved config)."""
        blob = json.dumps({"method": self.name, "config": config}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


METHODS: dict[str, Method] = {}


def register(name: str, target: MethodFn | str | None = None, *, defaults: dict[str, Any] | None = None,
             needs: tuple[str, ...] = (), default: bool = False, description: str = ""):
    """Add a method. Usable as `register("x", fn, ...)` or as a decorator `@register("x", ...)`."""

    def add(fn: MethodFn | str) -> MethodFn | str:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        doc = description or (((fn.__doc__ or "").strip().split("\n")[0]) if callable(fn) else "")
        METHODS[name] = Method(name, fn, dict(defaults or {}), frozenset(needs), default, doc)
        return fn

    return add(target) if target is not None else add


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}") from None


def default_methods() -> list[str]:
    return [name for name, method in METHODS.items() if method.default]


def check_change_map(change_map, b: Image.Image):
    """B's change map — **1 = change fully, 0 = keep** — as a float tensor (H, W) at any
    resolution of B's aspect (methods resize it to their latent grid); a clear error otherwise.
    Takes a tensor/array in [0, 1] or a greyscale image (white = change fully)."""
    from ops.differential_diffusion import as_change_map

    m = as_change_map(change_map)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or min(m.shape) < 1:
        raise ValueError(f"a change map is one (H, W) array, got shape {tuple(m.shape)}")
    if abs(m.shape[0] / m.shape[1] - b.height / b.width) > 0.02:
        raise ValueError(f"the change map ({m.shape[1]}×{m.shape[0]}) and B ({b.width}×{b.height}) "
                         "differ in aspect ratio")
    return m


def run_method(name: str, ctx: MethodContext, a: Image.Image, a_prime: Image.Image, b: Image.Image,
               change_map=None, **overrides: Any) -> Image.Image:
    """B′ for one triplet. `change_map` (optional, 1 = change fully, 0 = keep) confines the edit
    of B: "apply the difference only here, this much" (SPEC §3); every method takes it."""
    method = get_method(name)
    extra = {} if change_map is None else {"change_map": check_change_map(change_map, b)}
    out = method.fn(ctx, a, a_prime, b, **extra, **method.resolve(overrides))
    if not isinstance(out, Image.Image):
        raise TypeError(f"method {name!r} returned {type(out).__name__}, expected a PIL image")
    return out


# --------------------------------------------------------------------------- the methods


@register("no_edit", default=True)
def no_edit(ctx: MethodContext, a: Image.Image, a_prime: Image.Image, b: Image.Image,
            change_map=None) -> Image.Image:
    """B′ = B: the floor every method must beat (directional score 0)."""
    return b.copy()


# Difference Inversion and its ablations (ops/di_method.py); imported on first use.
_DI_NEEDS = ("pipeline", "joint_clip", "captioner")


def _register_difference_inversion() -> None:
    from ops.di_method import ABLATIONS, DI_DEFAULTS

    register("difference_inversion", "ops.di_method:generate", defaults=DI_DEFAULTS, needs=_DI_NEEDS, default=True,
             description="Difference Inversion (Kim et al.): DIFF tokens from (A, A′) applied to B")
    for name, changes in ABLATIONS.items():
        register(name, "ops.di_method:generate", defaults={**DI_DEFAULTS, **changes}, needs=_DI_NEEDS,
                 description=f"Difference Inversion ablation: {changes}")


_register_difference_inversion()


# The baselines that run on any Stable Diffusion (ops/baseline_methods.py): not default, DIA is slow.
def _register_baselines() -> None:
    from ops.baseline_methods import DD_DEFAULTS, DIA_CAPTIONS_DEFAULTS, DIA_DEFAULTS, SDEDIT_DEFAULTS

    register("dia", "ops.baseline_methods:dia_method", defaults=DIA_DEFAULTS, needs=("pipeline",),
             description="Diffusion Image Analogies (Šubrtová et al.): cB + st·(cA′ − cA) from B's estimated noise")
    register("dia_captions", "ops.baseline_methods:dia_captions_method", defaults=DIA_CAPTIONS_DEFAULTS,
             needs=("pipeline", "captioner"), description="DIA's caption baseline: caption-feature algebra + img2img")
    register("differential_diffusion", "ops.baseline_methods:differential_diffusion_method", defaults=DD_DEFAULTS,
             needs=("pipeline", "captioner"), description="Differential Diffusion: B edited by a change map and a text")
    register("sdedit", "ops.baseline_methods:sdedit_method", defaults=SDEDIT_DEFAULTS, needs=("pipeline", "captioner"),
             description="SDEdit: img2img on B toward the instruction (or A′'s caption)")


_register_baselines()
