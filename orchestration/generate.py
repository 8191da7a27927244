"""The generation loop: every usable triplet × every method of the run → a `generations` row.
A method that fails on one triplet gives an error row; the rest go on.

A partition's table holds every method ever materialised on it, not just this run's:

- rows of a method that is not in this run are kept (while their triplet's inputs are unchanged),
  so `analogy demo --methods visii` on a materialised partition adds VISII beside the others;
- a (triplet inputs, method config, seed, profile) that already has a B′ is reused, not
  recomputed, so re-running a partition with one more method computes only that method.
"""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from evaluation.ingestion.files import StoreFault
from models.loaders import ModelMissingError
from ops.cache import key_digest
from ops.registry import MethodRun, config_json, run_method
from orchestration.peak_memory import PeakMemory
from orchestration.storage import Store


def inputs_key(triplet: dict) -> str:
    """What a B′ depends on in a triplet: its A, A′, B and instruction."""
    return key_digest("inputs", tuple(triplet[k] for k in ("a_hash", "a_prime_hash", "b_hash", "instruction")))


def generate_rows(triplets: list[dict], runs: list[MethodRun], store: Store, models, cache, seed: int,
                  log: logging.Logger, previous: list[dict] = (), run_id: str | None = None
                  ) -> tuple[list[dict], dict[str, int]]:
    """(the partition's new generations rows, counts {computed, reused, kept}); `previous`: the
    partition's rows before this run (empty on a first run); `run_id`: the Dagster run, recorded per row."""
    usable = [t for t in triplets if not t["error"]]
    current = {t["triplet_id"]: inputs_key(t) for t in usable}
    labels = {run.label for run in runs}
    kept = [g for g in previous if g["method"] not in labels and current.get(g["triplet_id"]) == g["inputs_key"]]
    done = {(g["inputs_key"], g["config_hash"], g["seed"], g["models"]): g for g in previous
            if not g["error"] and store.png_path(g["b_prime_hash"]).exists()}
    rows, counts = [], {"computed": 0, "reused": 0, "kept": len(kept)}
    for run in runs:
        missing_model = None  # a model the method needs is absent: every triplet would fail the same way
        for i, t in enumerate(tqdm(usable, desc=run.label, unit="triplet", disable=None, leave=False), start=1):
            key = (current[t["triplet_id"]], run.config_hash, seed, models.weights_key)
            if key in done:
                rows.append(done[key] | {"triplet_id": t["triplet_id"], "method": run.label})
                counts["reused"] += 1
                continue
            row = {"triplet_id": t["triplet_id"], "method": run.label, "config_hash": run.config_hash,
                   "config": config_json(run.config), "seed": seed, "profile": models.profile_name,
                   "models": models.weights_key,
                   "inputs_key": key[0], "b_prime_hash": None, "seconds": None, "peak_memory_mb": None,
                   "privileged": run.method.privileged(run.config, t.get("instruction")), "run_id": run_id,
                   "error": missing_model}
            start = time.perf_counter()
            if missing_model is None:
                try:
                    a, a_prime, b = (store.get_png(t[f"{r}_hash"]) for r in ("a", "a_prime", "b"))
                    with PeakMemory(models.device) as peak:
                        b_prime = run_method(run, models, a, a_prime, b, seed=seed, cache=cache,
                                             instruction=t.get("instruction"))
                    row["b_prime_hash"] = store.put_png(b_prime.convert("RGB"))
                    row["peak_memory_mb"] = peak.mb
                except StoreFault:  # the store or the disk, not this triplet: the step fails, a re-run resumes
                    raise
                except Exception as exc:  # one bad triplet or method must not fail the partition
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    log.warning(f"{run.label} failed on {t['triplet_id']}: {row['error']}")
                    if isinstance(exc, ModelMissingError):
                        missing_model = row["error"]
            row["seconds"] = time.perf_counter() - start
            counts["computed"] += 1
            log.info(f"[{i}/{len(usable)}] {run.label} {t['triplet_id']} {row['seconds']:.2f}s"
                     + (" (error)" if row["error"] else ""))
            rows.append(row)
    return kept + rows, counts
