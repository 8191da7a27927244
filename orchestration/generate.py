"""The generation loop: every usable triplet × every method → a `generations`
row. A method that fails on one triplet gives an error row; the rest go on."""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from models.loaders import ModelMissingError
from ops.cache import Cache
from ops.registry import MethodRun, config_json, run_method
from orchestration.storage import Store


def generate_rows(triplets: list[dict], runs: list[MethodRun], store: Store, models, cache: Cache, seed: int,
                  log: logging.Logger) -> list[dict]:
    usable = [t for t in triplets if not t["error"]]
    rows = []
    for run in runs:
        missing_model = None  # a model the method needs is absent: every triplet would fail the same way
        for i, t in enumerate(tqdm(usable, desc=run.label, unit="triplet", disable=None, leave=False), start=1):
            row = {"triplet_id": t["triplet_id"], "method": run.label, "config_hash": run.config_hash,
                   "config": config_json(run.config), "seed": seed, "b_prime_hash": None, "seconds": None,
                   "error": missing_model}
            start = time.perf_counter()
            if missing_model is None:
                try:
                    a, a_prime, b = (store.get_png(t[f"{r}_hash"]) for r in ("a", "a_prime", "b"))
                    b_prime = run_method(run, models, a, a_prime, b, seed=seed, cache=cache,
                                         instruction=t.get("instruction"))
                    row["b_prime_hash"] = store.put_png(b_prime.convert("RGB"))
                except Exception as exc:  # one bad triplet or method must not fail the partition
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    log.warning(f"{run.label} failed on {t['triplet_id']}: {row['error']}")
                    if isinstance(exc, ModelMissingError):
                        missing_model = row["error"]
            row["seconds"] = time.perf_counter() - start
            log.info(f"[{i}/{len(usable)}] {run.label} {t['triplet_id']} {row['seconds']:.2f}s"
                     + (" (error)" if row["error"] else ""))
            rows.append(row)
    return rows
