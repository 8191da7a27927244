"""The pipeline's cache of method intermediates, on disk under `$ANALOGY_HOME/blobs/cache/`.

    blobs/cache/<kind>/<sha256(kind, key)>.safetensors   a dataclass: its tensors, the rest as JSON
    blobs/cache/<kind>/<sha256(kind, key)>.json          a plain JSON value (a caption)

One codec serves every cached value: a dataclass from `ops/` (D̃, deltas, PEZ prompts,
DIA's conditionings and noise estimates, …) is written as safetensors, its tensor
fields as tensors and every other field in the JSON metadata with the class's name;
nothing is pickled. The DI assets write through this cache and the `generations`
asset reads through it, so each intermediate is stored once and computed once.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from evaluation.ingestion.files import atomic_write
from ops.cache import Cache
from orchestration.storage import Store


def split_fields(value: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A dataclass instance's tensor fields, and its other fields."""
    items = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    tensors = {k: v for k, v in items.items() if isinstance(v, torch.Tensor)}
    return tensors, {k: v for k, v in items.items() if k not in tensors}


def encode(value: Any) -> tuple[bytes, str]:
    """(bytes, extension) of a cacheable value: a dataclass defined in ops/, or plain JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        tensors, rest = split_fields(value)
        tensors = {k: t.detach().cpu().contiguous() for k, t in tensors.items()}
        meta = {"type": f"{cls.__module__}:{cls.__qualname__}", "fields": json.dumps(rest)}
        return save_safetensors(tensors, metadata=meta), "safetensors"
    try:
        return json.dumps({"value": value}).encode(), "json"
    except TypeError:
        raise TypeError(f"no codec for {type(value).__name__}: cache dataclasses (of tensors) or JSON values") from None


def decode(data: bytes, ext: str) -> Any:
    if ext == "json":
        return json.loads(data)["value"]
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + header_len]).get("__metadata__", {})
    module, _, name = meta.get("type", "").partition(":")
    if not module.startswith("ops."):  # only the methods' own result types are ever built from a file
        raise ValueError(f"cached value of unexpected type {meta.get('type')!r}")
    cls = getattr(importlib.import_module(module), name)
    return cls(**load_safetensors(data), **json.loads(meta["fields"]))


class DiskCache(Cache):
    """`ops.cache.Cache` whose values also live under `blobs/cache/` of a store."""

    def __init__(self, store: Store):
        super().__init__()
        self.root = store.home / "blobs" / "cache"

    def path(self, kind: str, digest: str) -> Path | None:
        """Where an entry is stored (None if it is not)."""
        return next((p for p in (self.root / kind / f"{digest}.{ext}" for ext in ("safetensors", "json"))
                     if p.exists()), None)

    def load(self, kind: str, digest: str) -> Any | None:
        path = self.path(kind, digest)
        return None if path is None else decode(path.read_bytes(), path.suffix[1:])

    def save(self, kind: str, digest: str, value: Any) -> None:
        data, ext = encode(value)
        atomic_write(self.root / kind / f"{digest}.{ext}", data)
