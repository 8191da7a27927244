"""Resources: where data lives and which models a run uses."""

from __future__ import annotations

import logging

import dagster as dg

from ops.registry import MethodContext
from orchestration.storage import Store


class AnalogyStorage(dg.ConfigurableResource):
    """The `$ANALOGY_HOME` tree of Parquet tables, blobs and the DuckDB file."""

    home: str | None = None  # None → $ANALOGY_HOME, else ./.analogy (resolved when used)

    def store(self) -> Store:
        return Store(self.home)


class ModelsResource(dg.ConfigurableResource):
    """A model profile (toy, sd21-base, …); models load lazily and are cached per process."""

    profile: str = "toy"
    device: str | None = None  # None → cuda if available, else cpu

    def get_profile(self):
        from models.profiles import get_profile

        return get_profile(self.profile)

    def method_context(self, seed: int, log: logging.Logger, memo=None) -> MethodContext:
        """`memo`: the cache of method intermediates (orchestration.memo.DiskMemo in the pipeline)."""
        return MethodContext(profile_name=self.profile, seed=seed, log=log, device=self.device,
                             memo=memo if memo is not None else {})

    def image_encoder(self, kind: str):
        from models.loaders import load_image_encoder

        return load_image_encoder(self.get_profile(), kind)

    def judge(self):
        from models.loaders import load_judge

        return load_judge(self.get_profile())

    def text_encoder(self):
        from models.loaders import load_text_encoder

        return load_text_encoder(self.get_profile())


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {"storage": AnalogyStorage(), "models": ModelsResource()}
