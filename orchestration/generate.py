"""The generation loop: every usable triplet × every method → a `generations`
row. A method that fails on one triplet gives an error row; the rest go on."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from tqdm import tqdm

from models.loaders import ModelMissingError
from ops.registry import MethodContext, get_method, run_method
from orchestration.storage import Store


def generation_seed(base_seed: int, triplet_id: str, config_hash: str) -> int:
    """One seed per (triplet, method config): reruns reproduce, methods don't share noise by accident."""
    return int(hashlib.sha256(f"{base_seed}:{triplet_id}:{config_hash}".encode()).hexdigest()[:8], 16)


def generate_rows(triplets: list[dict], methods: list[str], options: dict[str, dict[str, Any]], store: Store,
                  ctx: MethodContext, base_seed: int, log: logging.Logger) -> list[dict]:
    usable = [t for t in triplets if not t["error"]]
    rows = []
    for name in methods:
        method = get_method(name)
        config = method.resolve(options.get(name))
        config_hash = method.config_hash(config)
        missing_model = None  # a model the method needs is absent: every triplet would fail the same way
        for i, t in enumerate(tqdm(usable, desc=name, unit="triplet", disable=None, leave=False), start=1):
            seed = generation_seed(base_seed, t["triplet_id"], config_hash)
            row = {"triplet_id": t["triplet_id"], "method": name, "config_hash": config_hash,
                   "config": json.dumps(config, sort_keys=True, default=str), "seed": seed,
                   "b_prime_hash": None, "seconds": None, "error": missing_model}
            start = time.perf_counter()
            if missing_model is None:
                try:
                    a, a_prime, b = (store.get_png(t[f"{r}_hash"]) for r in ("a", "a_prime", "b"))
                    b_prime = run_method(name, ctx.for_triplet(seed, t.get("instruction")), a, a_prime, b, **config)
                    row["b_prime_hash"] = store.put_png(b_prime.convert("RGB"))
                except Exception as exc:  # one bad triplet or method must not fail the partition
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    log.warning(f"{name} failed on {t['triplet_id']}: {row['error']}")
                    if isinstance(exc, ModelMissingError):
                        missing_model = row["error"]
            row["seconds"] = time.perf_counter() - start
            log.info(f"[{i}/{len(usable)}] {name} {t['triplet_id']} {row['seconds']:.2f}s"
                     + (" (error)" if row["error"] else ""))
            rows.append(row)
    return rows
