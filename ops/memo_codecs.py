"""How each cached intermediate of a method becomes bytes and back (JSON or
safetensors, never pickle). Used by the pipeline's on-disk method cache."""

from __future__ import annotations

import json
from dataclasses import asdict

from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ops.deltas import Deltas
from ops.diff_tokens import DiffTokens
from ops.pez import HardPrompt


def encode(value) -> tuple[bytes, str]:
    """(bytes, extension) for a cacheable value."""
    if isinstance(value, str):
        return json.dumps({"type": "str", "value": value}).encode(), "json"
    if isinstance(value, HardPrompt):
        return json.dumps({"type": "HardPrompt", **asdict(value)}).encode(), "json"
    if isinstance(value, Deltas):
        tensors = {k: v.detach().cpu().contiguous() for k, v in asdict(value).items()}
        return save_safetensors(tensors, metadata={"type": "Deltas"}), "safetensors"
    if isinstance(value, DiffTokens):
        return save_safetensors({"tokens": value.tokens.detach().cpu().contiguous()},
                                metadata={"type": "DiffTokens", "curve": json.dumps(value.curve)}), "safetensors"
    raise TypeError(f"no codec for {type(value).__name__}")


def decode(data: bytes, ext: str):
    if ext == "json":
        obj = json.loads(data)
        kind = obj.pop("type")
        return obj["value"] if kind == "str" else HardPrompt(**obj)
    tensors = load_safetensors(data)
    meta = _safetensors_metadata(data)
    if meta.get("type") == "Deltas":
        return Deltas(**tensors)
    if meta.get("type") == "DiffTokens":
        return DiffTokens(tensors["tokens"], json.loads(meta["curve"]))
    raise ValueError(f"unknown cached value type {meta.get('type')!r}")


def _safetensors_metadata(data: bytes) -> dict:
    header_len = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + header_len]).get("__metadata__", {})
