"""The analogy methods, by name: each name → (entry function, config class, default flag,
description), and for a preset (an ablation) the config fields it changes.

An entry function reads

    fn(models, a, a_prime, b, config, *, seed, cache, change_map, instruction) -> B′ (PIL image)

`models` gives the loaded models (models.context.ModelContext), `config` is the
method's frozen config dataclass — the only place its defaults live — `seed` the
user's seed (methods derive every other seed from it and content, ops.cache),
`cache` the content-keyed cache of intermediates, `change_map` an optional map
for B (1 = change fully, 0 = keep), `instruction` the triplet's edit text if any.

Adding a method = one module in ops/ (config + entry function) and one line below.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ops.analogist import AnalogistConfig, analogist
from ops.cache import Cache, config_hash
from ops.dia import DIAConfig, dia
from ops.dia_captions import DIACaptionConfig, dia_captions
from ops.difference_inversion import ABLATIONS, DIConfig, difference_inversion, prepare_diff_tokens
from ops.differential_diffusion import DDConfig, as_change_map, differential_diffusion
from ops.instructpix2pix import IP2PConfig, instructpix2pix
from ops.no_edit import NoEditConfig, no_edit
from ops.sdedit import SDEditConfig, sdedit
from ops.visii import VISIIConfig, prepare_instructions, visii

MethodFn = Callable[..., Image.Image]


@dataclass(frozen=True)
class Method:
    name: str
    fn: MethodFn
    config_class: type
    default: bool = False  # part of a run when no method list is given
    description: str = ""
    preset: Mapping[str, Any] = field(default_factory=dict)  # fields this preset changes (ablations)
    # optional: prepare(models, pairs [(A, A′)], config, *, seed, cache, batch_size) fills the cache
    # with what the method's per-pair work needs for many triplets at once (DI: D̃ trained in batches)
    prepare: Callable | None = None
    # optional: reads_instruction(config) -> True where the method is given the triplet's instruction (the edit
    # in words, ground truth the example-only methods never see): its B′ are marked privileged and ranked apart
    reads_instruction: Callable[[Any], bool] | None = None

    def privileged(self, config, instruction: str | None) -> bool:
        """Whether a B′ of this method with `config` on a triplet with `instruction` used ground truth."""
        return bool(instruction) and self.reads_instruction is not None and self.reads_instruction(config)

    def config(self, overrides: Mapping[str, Any] | None = None, profile=None):
        """The config of one run: the class defaults, then the profile's defaults for this config
        class, then the preset, then `overrides`. An unknown field is an error, not a no-op."""
        layers = [dict(profile.method_defaults.get(self.config_class.__name__, {})) if profile else {},
                  dict(self.preset), dict(overrides or {})]
        fields = {f.name for f in dataclasses.fields(self.config_class)}
        for layer in layers:
            unknown = set(layer) - fields
            if unknown:
                raise ValueError(f"method {self.name!r} has no setting(s) {sorted(unknown)}; known: {sorted(fields)}")
        values = {k: tuple(v) if isinstance(v, list) else v for layer in layers for k, v in layer.items()}
        for f in dataclasses.fields(self.config_class):
            if f.name in values and not _fits(f.default, values[f.name]):
                raise ValueError(f"method {self.name!r}: {f.name} must be a {type(f.default).__name__} "
                                 f"(default {f.default!r}), got {values[f.name]!r}")
        return self.config_class(**values)


def _fits(default: Any, value: Any) -> bool:
    """Whether `value` has the type of a field whose default is `default` (bool, int, float, str, tuple)."""
    if isinstance(default, tuple):
        return isinstance(value, tuple) and len(value) == len(default) and all(map(_fits, default, value))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def config_json(config) -> str:
    """A resolved config as the JSON recorded beside every output."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)


METHODS: dict[str, Method] = {}


def register(name: str, fn: MethodFn, config_class: type, *, default: bool = False, description: str = "",
             preset: Mapping[str, Any] | None = None, prepare: Callable | None = None,
             reads_instruction: Callable[[Any], bool] | None = None) -> Method:
    if name in METHODS:
        raise ValueError(f"method {name!r} is registered twice")
    method = Method(name, fn, config_class, default, description or (fn.__doc__ or "").strip().split("\n")[0],
                    dict(preset or {}), prepare, reads_instruction)
    method.config(method.preset)  # a preset naming an unknown field fails at import, not in a run
    METHODS[name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}") from None


def default_methods() -> list[str]:
    return [name for name, method in METHODS.items() if method.default]


def parse_method_spec(spec: str) -> tuple[str, dict]:
    """'name[k=v;k=v]' → ('name', {k: v}); values parsed as JSON when they can be."""
    spec = spec.strip()
    if "[" not in spec:
        return spec, {}
    if not spec.endswith("]"):
        raise ValueError(f"bad method spec {spec!r}: expected name[key=value;key=value]")
    name, _, body = spec[:-1].partition("[")
    settings = {}
    for item in filter(None, (part.strip() for part in body.split(";"))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad setting {item!r} in {spec!r}: expected key=value")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value.strip()
    return name.strip(), settings


@dataclass(frozen=True)
class MethodRun:
    """One method spec of a run, resolved: its label (the spec as given), method and config."""

    label: str
    method: Method
    config: Any

    @property
    def config_hash(self) -> str:
        return config_hash({"method": self.method.name, "config": dataclasses.asdict(self.config)})


def resolve_specs(specs: list[str], profile=None) -> list[MethodRun]:
    """Method specs ('name' or 'name[k=v;…]') → MethodRuns; every name and setting is checked
    before anything runs. Duplicates are an error."""
    runs = []
    for spec in specs:
        name, settings = parse_method_spec(spec)
        runs.append(MethodRun(spec.strip(), get_method(name), get_method(name).config(settings, profile)))
    labels = [r.label for r in runs]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ValueError(f"method(s) given twice: {', '.join(duplicated)}")
    return runs


def check_change_map(change_map, b: Image.Image):
    """B's change map — **1 = change fully, 0 = keep** — as a float tensor (H, W) at any
    resolution of B's aspect (methods resize it to their latent grid); a clear error otherwise.
    Takes a tensor/array in [0, 1] or a greyscale image (white = change fully)."""
    m = as_change_map(change_map)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or min(m.shape) < 1:
        raise ValueError(f"a change map is one (H, W) array, got shape {tuple(m.shape)}")
    if abs(m.shape[0] / m.shape[1] - b.height / b.width) > 0.02:
        raise ValueError(f"the change map ({m.shape[1]}×{m.shape[0]}) and B ({b.width}×{b.height}) "
                         "differ in aspect ratio")
    return m


def run_method(run: MethodRun, models, a: Image.Image, a_prime: Image.Image, b: Image.Image, *, seed: int = 0,
               cache: Cache | None = None, change_map=None, instruction: str | None = None) -> Image.Image:
    """B′ for one triplet. `change_map` (optional, 1 = change fully, 0 = keep) confines the edit
    of B: "apply the difference only here, this much"; every method takes it."""
    m = None if change_map is None else check_change_map(change_map, b)
    out = run.method.fn(models, a, a_prime, b, run.config, seed=seed, cache=cache if cache is not None else Cache(),
                        change_map=m, instruction=instruction)
    if not isinstance(out, Image.Image):
        raise TypeError(f"method {run.method.name!r} returned {type(out).__name__}, expected a PIL image")
    return out


# --------------------------------------------------------------------------- the methods

register("no_edit", no_edit, NoEditConfig, default=True)
register("difference_inversion", difference_inversion, DIConfig, default=True, prepare=prepare_diff_tokens,
         description="Difference Inversion (Kim et al.): DIFF tokens from (A, A′) applied to B")
for _name, _preset in ABLATIONS.items():
    register(_name, difference_inversion, DIConfig, preset=_preset, prepare=prepare_diff_tokens,
             description=f"Difference Inversion ablation: {_preset}")
register("dia", dia, DIAConfig,
         description="Diffusion Image Analogies (Šubrtová et al.): cB + st·(cA′ − cA) from B's estimated noise")
register("dia_captions", dia_captions, DIACaptionConfig,
         description="DIA's caption baseline: caption-feature algebra + img2img")
_TEXT_IS_INSTRUCTION = lambda config: config.text == "instruction"  # noqa: E731 (the triplet's, where it has one)
register("differential_diffusion", differential_diffusion, DDConfig, reads_instruction=_TEXT_IS_INSTRUCTION,
         description="Differential Diffusion: B edited by a change map and a text")
register("sdedit", sdedit, SDEditConfig, reads_instruction=_TEXT_IS_INSTRUCTION,
         description="SDEdit: img2img on B toward the instruction (or A′'s caption)")
register("instructpix2pix", instructpix2pix, IP2PConfig, reads_instruction=_TEXT_IS_INSTRUCTION,
         description="InstructPix2Pix (Brooks et al.): the instruction editor on B with the triplet's instruction "
                     "(or A′'s caption)")
register("visii", visii, VISIIConfig, prepare=prepare_instructions,
         description="VISII (Nguyen et al.): the editor instruction learned from (A, A′), applied to B")
register("analogist", analogist, AnalogistConfig,
         description="Analogist (Gu et al.): B′ inpainted as the fourth cell of the A | A′ / B grid, with "
                     "self-attention cloning and cross-attention masking")
register("analogist_no_sac", analogist, AnalogistConfig, preset={"sac": False},
         description="Analogist ablation: no self-attention cloning")
register("analogist_no_cam", analogist, AnalogistConfig, preset={"cam": False},
         description="Analogist ablation: no cross-attention masking")
