"""The on-disk method cache: every cached type survives a new process byte-exactly, and a
value is computed once per content."""

import torch

from ops.cache import Cache, key_digest
from ops.deltas import Deltas
from ops.dia import Conditioning, NoiseEstimate
from ops.diff_tokens import DiffTokens
from ops.pez import HardPrompt
from orchestration.cache import DiskCache, decode, encode
from orchestration.storage import Store


def _same(got, value) -> bool:
    if isinstance(value, str):
        return got == value
    for name, item in vars(value).items():
        other = getattr(got, name)
        if isinstance(item, torch.Tensor):
            if not torch.equal(other, item):
                return False
        elif other != item and not (item != item):  # NaN == NaN here
            return False
    return type(got) is type(value)


VALUES = {
    "caption": "a small red star on a grey background",
    "pez_prompt": HardPrompt([5, 6, 7], "red star", 0.91, [0.1, 0.5, 0.91]),
    "clip_deltas": Deltas(torch.randn(8), torch.randn(8), torch.randn(8)),
    "diff_tokens": DiffTokens(torch.randn(5, 8), {"tc": [1.0, 0.5], "clip": [0.9]}),
    "dia_conditioning": Conditioning(torch.randn(10, 8), torch.randn(1, 77, 8), [0.3, 0.2], torch.randn(10, 8),
                                     torch.randn(8, 4, 4, 4), torch.tensor([1, 101])),
    "dia_noise": NoiseEstimate(torch.randn(1, 4, 4, 4), [0.5, 0.1]),
}


def test_disk_cache_round_trips_every_cached_type(tmp_path):
    cache = DiskCache(Store(tmp_path))
    for kind, value in VALUES.items():
        assert cache(kind, ("k",), lambda value=value: value) is value
    fresh = DiskCache(Store(tmp_path))  # as a later run would see it
    for kind, value in VALUES.items():
        got = fresh(kind, ("k",), lambda kind=kind: (_ for _ in ()).throw(AssertionError(f"{kind} recomputed")))
        assert _same(got, value), kind
    assert fresh.computed == {} and sum(fresh.reused.values()) == len(VALUES)
    assert sorted(p.parent.name for p in (tmp_path / "blobs" / "cache").glob("*/*")) == sorted(VALUES)


def test_a_nan_prompt_cosine_round_trips():
    data, ext = encode(HardPrompt([1], "x", float("nan")))
    assert decode(data, ext).cosine != decode(data, ext).cosine


def test_only_method_types_are_decoded(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Foreign:
        x: torch.Tensor

    data, ext = encode(Foreign(torch.ones(1)))
    import pytest

    with pytest.raises(ValueError, match="unexpected type"):
        decode(data, ext)
    with pytest.raises(TypeError, match="no codec"):
        encode(object())


def test_cache_computes_once_and_counts(tmp_path):
    calls = []
    cache = DiskCache(Store(tmp_path))
    for _ in range(3):
        assert cache("caption", ("x",), lambda: calls.append(1) or "cap") == "cap"
    again = DiskCache(Store(tmp_path))
    assert again("caption", ("x",), lambda: calls.append(1) or "other") == "cap"
    assert len(calls) == 1 and cache.stats == {"caption": {"computed": 1, "reused": 2}}
    assert key_digest("caption", ("x",)) != key_digest("caption", ("y",))
    memory = Cache()
    assert memory("k", (1,), lambda: 41) == 41 and memory("k", (1,), lambda: 0) == 41
