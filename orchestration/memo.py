"""The on-disk method cache: `MethodContext.memo` backed by `$ANALOGY_HOME/blobs/memo/`.

Keys are the content keys the methods build (image hashes, model ids, config
hashes); a key's SHA-256 names its file, so a caption, a PEZ prompt or a D̃ is
computed once per content, whatever the partition, run or process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import MutableMapping

from evaluation.files import atomic_write
from ops import memo_codecs
from orchestration.storage import Store


def key_digest(key: tuple) -> str:
    return hashlib.sha256(json.dumps(list(key), default=str).encode()).hexdigest()


class DiskMemo(MutableMapping):
    """A dict whose values also live under blobs/memo/<kind>/<sha256(key)>.<ext>."""

    def __init__(self, store: Store):
        self.root = store.home / "blobs" / "memo"
        self._memory: dict = {}

    def _paths(self, key: tuple):
        digest, kind = key_digest(key), str(key[0])
        return [self.root / kind / f"{digest}.{ext}" for ext in ("json", "safetensors")]

    def path(self, key: tuple):
        """Where `key`'s value is stored (None if it is not)."""
        return next((p for p in self._paths(key) if p.exists()), None)

    def __contains__(self, key) -> bool:
        return key in self._memory or self.path(key) is not None

    def __getitem__(self, key):
        if key not in self._memory:
            path = self.path(key)
            if path is None:
                raise KeyError(key)
            self._memory[key] = memo_codecs.decode(path.read_bytes(), path.suffix[1:])
        return self._memory[key]

    def __setitem__(self, key, value) -> None:
        data, ext = memo_codecs.encode(value)
        atomic_write(self.root / str(key[0]) / f"{key_digest(key)}.{ext}", data)
        self._memory[key] = value

    def __delitem__(self, key) -> None:
        self._memory.pop(key, None)
        for path in self._paths(key):
            path.unlink(missing_ok=True)

    def __iter__(self):
        return iter(self._memory)

    def __len__(self) -> int:
        return len(self._memory)
