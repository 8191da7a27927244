"""What every cached intermediate is keyed by, and the cache the methods write through.

- `image_hash`: an image's identity is its pixels (mode, size, raw bytes). The blob
  store names PNGs by it, the cache keys use it, the seeds are derived from it.
- `config_hash`: a config dataclass (or dict) → 12 hex digits; names outputs.
- `content_seed`: the one seed derivation — from the user's seed and content
  (images, names), never from a triplet's position — so a D̃, a PEZ prompt or a
  DIA estimate of one image is the same in every triplet, partition and run.
- `Cache`: `cache(kind, key, compute)` returns the stored value of (kind, key) or
  computes and stores it, counting both. `Cache()` keeps values in memory; the
  pipeline's on-disk cache (orchestration.cache) stores them under $ANALOGY_HOME.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from PIL import Image

T = TypeVar("T")

PREPARE_BATCH_SIZE = 8
"""How many items (DI: (A, A′) pairs) a method's `prepare` hook computes in one batch unless told
otherwise (`Cache.many`): the `methods` resource's and `analogy bench --batch-size`'s default."""


def image_hash(image: Image.Image) -> str:
    """SHA-256 (hex) of an image's pixels, mode and size: the same pixels give the same hash
    whatever file they came from."""
    h = hashlib.sha256(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def config_hash(config: Any) -> str:
    """12 hex digits naming a config (a dataclass or a JSON-able dict)."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def content_seed(seed: int, *parts: Image.Image | str) -> int:
    """A 32-bit seed from the user's `seed` and content: an image part counts by the first 16 hex
    digits of its `image_hash`, any other part by its text."""
    text = ":".join([str(seed)] + [image_hash(p)[:16] if isinstance(p, Image.Image) else str(p) for p in parts])
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def key_part(value: Any) -> Any:
    """A cache-key component: images by hash, dataclass configs by config hash, the rest as is."""
    if isinstance(value, Image.Image):
        return image_hash(value)
    if dataclasses.is_dataclass(value):
        return config_hash(value)
    return value


def key_digest(kind: str, key: tuple) -> str:
    """SHA-256 (hex) of (kind, key): the name of a cache entry."""
    return hashlib.sha256(json.dumps([kind, [key_part(k) for k in key]], default=str).encode()).hexdigest()


class Cache:
    """Values by (kind, key) in memory. `stats` counts, per kind, what was computed and what reused.

    Subclasses store elsewhere by overriding `load(kind, digest)` (None = absent) and
    `save(kind, digest, value)`."""

    def __init__(self):
        self._memory: dict[tuple[str, str], Any] = {}
        self.computed: Counter[str] = Counter()
        self.reused: Counter[str] = Counter()

    def __call__(self, kind: str, key: tuple, compute: Callable[[], T]) -> T:
        value = self.get(kind, key)
        if value is None:
            value = compute()
            self.put(kind, key, value)
        return value

    def get(self, kind: str, key: tuple) -> Any | None:
        """The cached value (counted as reused), or None where there is none yet."""
        digest = key_digest(kind, key)
        value = self._memory.get((kind, digest))
        if value is None:
            value = self.load(kind, digest)
            if value is None:
                return None
            self._memory[kind, digest] = value
        self.reused[kind] += 1
        return value

    def put(self, kind: str, key: tuple, value: Any) -> None:
        """Store a value computed outside `__call__` (counted as computed): a batch of several."""
        digest = key_digest(kind, key)
        self.save(kind, digest, value)
        self.computed[kind] += 1
        self._memory[kind, digest] = value

    def many(self, kind: str, keys: list[tuple], compute: Callable[[list[int]], list[Any]],
             batch_size: int = 1) -> list[Any]:
        """Values for many keys: the cached ones, and the rest computed `batch_size` at a time by
        `compute(indices) -> [value or Exception]`, once per distinct key (a repeat gets the first's
        value). An Exception in a slot is that item's failure: returned in its place, not stored."""
        results: list[Any] = [self.get(kind, key) for key in keys]
        first: dict[str, int] = {}
        for i, value in enumerate(results):
            if value is None:
                first.setdefault(key_digest(kind, keys[i]), i)
        todo = sorted(first.values())
        step = max(1, batch_size)
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            for i, value in zip(chunk, compute(chunk), strict=True):
                if not isinstance(value, Exception):
                    self.put(kind, keys[i], value)
                results[i] = value
        for i, value in enumerate(results):
            if value is None:  # a repeat of a key computed above
                results[i] = results[first[key_digest(kind, keys[i])]]
        return results

    def load(self, kind: str, digest: str) -> Any | None:
        return None

    def save(self, kind: str, digest: str, value: Any) -> None:
        pass

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        kinds = sorted(set(self.computed) | set(self.reused))
        return {k: {"computed": self.computed[k], "reused": self.reused[k]} for k in kinds}


def single(results: list[Any]) -> Any:
    """The one value of a batch of one, raising it if it is the item's Exception."""
    (value,) = results
    if isinstance(value, Exception):
        raise value
    return value
