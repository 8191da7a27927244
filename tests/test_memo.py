"""The on-disk method cache: values survive a new process (a new DiskMemo) byte-exactly."""

import torch

from ops.deltas import Deltas
from ops.diff_tokens import DiffTokens
from ops.pez import HardPrompt
from ops.registry import MethodContext
from orchestration.memo import DiskMemo
from orchestration.storage import Store


def test_disk_memo_round_trips_every_cached_type(tmp_path):
    store = Store(tmp_path)
    memo = DiskMemo(store)
    values = {
        ("caption", "m", "h1"): "a small red star on a grey background",
        ("prompt", "m", "pez", 10, 300, 0, "h1"): HardPrompt([5, 6, 7], "red star", 0.91, [0.1, 0.5, 0.91]),
        ("deltas", "m", "c", 0.8, "h1", "h2"): Deltas(torch.randn(8), torch.randn(8), torch.randn(8)),
        ("diff_tokens", "toy", "cfg", "h1", "h2"): DiffTokens(torch.randn(5, 8), {"tc": [1.0, 0.5], "clip": [0.9]}),
    }
    for key, value in values.items():
        memo[key] = value
    fresh = DiskMemo(store)  # as a later run would see it
    for key, value in values.items():
        assert key in fresh
        got = fresh[key]
        if isinstance(value, Deltas):
            assert all(torch.equal(getattr(got, k), getattr(value, k)) for k in ("image", "text", "interpolated"))
        elif isinstance(value, DiffTokens):
            assert torch.equal(got.tokens, value.tokens) and got.curve == value.curve
        else:
            assert got == value
    assert ("caption", "m", "other") not in fresh
    assert sorted(p.parent.name for p in (tmp_path / "blobs" / "memo").glob("*/*")) == [
        "caption", "deltas", "diff_tokens", "prompt"]


def test_context_computes_once(tmp_path):
    calls = []
    ctx = MethodContext(memo=DiskMemo(Store(tmp_path)))
    for _ in range(3):
        assert ctx.cached(("caption", "x"), lambda: calls.append(1) or "cap") == "cap"
    again = MethodContext(memo=DiskMemo(Store(tmp_path)))
    assert again.cached(("caption", "x"), lambda: calls.append(1) or "other") == "cap"
    assert len(calls) == 1
