"""Resources: where data lives and which models a run uses."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from models.context import ModelContext
from models.profiles import PROFILES
from ops.cache import PREPARE_BATCH_SIZE
from ops.registry import MethodRun, default_methods, resolve_specs
from orchestration.storage import Store


class AnalogyStorage(dg.ConfigurableResource):
    """The `$ANALOGY_HOME` tree of Parquet tables, blobs and the DuckDB file."""

    home: str | None = Field(default=None, description="the folder of tables, blobs, reports and analogy.duckdb; "
                             "unset: $ANALOGY_HOME, else ./.analogy")

    def store(self) -> Store:
        return Store(self.home)


class ModelsResource(dg.ConfigurableResource):
    """A model profile (toy, sd21-base, …); models load lazily and are cached per process."""

    profile: Literal[tuple(PROFILES)] = Field(  # type: ignore[valid-type]  (one choice per profile)
        default="toy", description="the model profile: which diffusion model, CLIPs, captioner and judge load")
    device: str | None = Field(default=None, description="torch device; unset: cuda if available, else cpu")

    def get_profile(self):
        from models.profiles import get_profile

        return get_profile(self.profile)

    def models(self) -> ModelContext:
        """The profile's models, loaded lazily (what a method gets as `models`)."""
        return ModelContext(self.profile, self.device)

    def image_encoder(self, kind: str):
        from models.loaders import load_image_encoder

        return load_image_encoder(self.get_profile(), kind)

    def judge(self):
        from models.loaders import load_judge

        return load_judge(self.get_profile())

    def text_encoder(self):
        from models.loaders import load_text_encoder

        return load_text_encoder(self.get_profile())


class MethodsResource(dg.ConfigurableResource):
    """The methods of a run and their settings, set once: every asset that prepares or runs a
    method (captions, pez_prompts, clip_deltas, diff_tokens, generations) reads this one resource.

    `methods`: specs as `analogy bench` takes them, 'name' or 'name[key=value;key=value]'
    (empty → every method registered with default=True); `seed`: the user's seed, from which
    every method derives its seeds with the content (ops.cache.content_seed)."""

    methods: list[str] = Field(default=[], description="method specs, 'name' or 'name[key=value;…]' "
                               "(see `analogy bench --help`); empty: every method registered with default=True")
    seed: int = Field(default=0, description="the seed every method derives its seeds from, with the content")
    batch_size: int = Field(default=PREPARE_BATCH_SIZE, ge=1,
                            description="Difference Inversion: (A, A′) pairs whose D̃ train together in one UNet "
                                        "batch (memory grows with it; D̃ changes only by float rounding)")

    @field_validator("methods")
    @classmethod
    def _known(cls, methods: list[str]) -> list[str]:
        resolve_specs(methods)  # a wrong name or setting fails here, before any work
        return methods

    def runs(self, profile) -> list[MethodRun]:
        """Every method of the run with its config resolved for `profile`."""
        return resolve_specs(self.methods or default_methods(), profile)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {"storage": AnalogyStorage(), "models": ModelsResource(), "methods": MethodsResource()}
