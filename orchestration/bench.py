"""`analogy bench`: score methods on a toy benchmark file with the judge CLIP.

A method spec is a registered name, optionally with settings:
`difference_inversion[inversion_steps=5]`. All specs share one cache, so a
sweep over generation settings reuses PEZ prompts and D̃.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from evaluation.images import decode_image
from evaluation.judge_scores import judge_triplet, summarise
from evaluation.stats import paired
from models.context import ModelContext
from models.loaders import load_judge
from ops.cache import PREPARE_BATCH_SIZE, Cache
from ops.registry import resolve_specs, run_method


def read_benchmark(path: Path, limit: int | None = None) -> list[dict]:
    table = pq.read_table(path)
    needed = {"triplet_id", "changed", "a_png", "a_prime_png", "b_png", "b_attrs", "b_prime_gt_attrs"}
    missing = needed - set(table.column_names)
    if missing:
        raise ValueError(f"{path} is not a toy benchmark file (missing columns {sorted(missing)}); "
                         f"write one with `analogy toy benchmark --seed S --n N --out FILE.parquet`")
    rows = table.to_pylist()
    return rows[:limit] if limit else rows


def run_bench(benchmark: Path, specs: list[str], profile_name: str = "toy", seed: int = 0,
              limit: int | None = None, rows_out: list | None = None,
              batch_size: int = PREPARE_BATCH_SIZE) -> dict:
    """{spec: {joint, target, keep, n, by_attribute, errors, seconds_per_triplet}}. With `rows_out`,
    also appends one row per (spec, triplet): {method, triplet_id, changed, target, keep, joint,
    error}, so that two methods can be compared triplet by triplet (paired). A method with a
    `prepare` hook (Difference Inversion) first prepares every triplet's pair, `batch_size` at a time."""
    models = ModelContext(profile_name)
    runs = resolve_specs(specs, models.profile)  # fail fast on unknown methods or settings
    rows = read_benchmark(Path(benchmark), limit)
    judge = load_judge(models.profile)
    cache = Cache()  # shared by every spec: a sweep of generation settings reuses PEZ prompts and D̃
    results = {}
    for run in runs:
        spec = run.label
        outputs, errors, start = [], [], time.perf_counter()
        if run.method.prepare is not None:  # e.g. every D̃ of the file, trained `batch_size` pairs at a time
            pairs = []
            # (A, A′), or (A, A′, B) where the prepared work depends on B (DI's clip_context='b')
            roles = getattr(run.config, "pair_roles", ("a", "a_prime"))
            for row in rows:
                try:
                    pairs.append(tuple(decode_image(row[f"{k}_png"]).image for k in roles))
                except Exception:  # noqa: BLE001 (the triplet's own loop below records why)
                    continue
            run.method.prepare(models, pairs, run.config, seed=seed, cache=cache, batch_size=batch_size)
        for row in tqdm(rows, desc=spec, unit="triplet", disable=None):
            try:  # the project's one image loader: checks, RGB conversion; a bad image fails its triplet alone
                a, a_prime, b = (decode_image(row[f"{k}_png"]).image for k in ("a", "a_prime", "b"))
                outputs.append((row, run_method(run, models, a, a_prime, b, seed=seed, cache=cache,
                                                instruction=row.get("instruction"))))
            except Exception as exc:  # a failing triplet is recorded, the rest go on
                errors.append({"triplet_id": row["triplet_id"], "error": f"{type(exc).__name__}: {exc}"})
        seconds = (time.perf_counter() - start) / max(1, len(rows))
        reads = judge.read([image for _, image in outputs]) if outputs else []
        scored = [{"changed": row["changed"]} | judge_triplet(read, json.loads(row["b_attrs"]),
                                                             json.loads(row["b_prime_gt_attrs"]), row["changed"])
                  for (row, _), read in zip(outputs, reads)]
        results[spec] = summarise(scored) | {"errors": errors, "seconds_per_triplet": round(seconds, 3)}
        if rows_out is not None:
            rows_out += [{"method": spec, "triplet_id": row["triplet_id"], "error": None} | score
                         for (row, _), score in zip(outputs, scored)]  # score: changed, target, keep, joint
            rows_out += [{"method": spec, "triplet_id": e["triplet_id"], "error": e["error"]} for e in errors]
    return results


ROWS_SCHEMA = pa.schema([("method", pa.string()), ("triplet_id", pa.string()), ("changed", pa.string()),
                         ("target", pa.float64()), ("keep", pa.float64()), ("joint", pa.float64()),
                         ("error", pa.string())])


def write_rows(rows: list[dict], path: Path) -> None:
    """`run_bench`'s per-triplet rows as Parquet (an error row's scores are null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ROWS_SCHEMA), path)


def paired_against(rows: list[dict], against: str) -> dict[str, dict]:
    """{other method: evaluation.stats.Paired as a dict} on the joint verdicts of `run_bench`'s rows (or
    of `--rows` files read back, as benchmarks/paired.py does): `against` compared with every other
    method, triplet by triplet; error rows are left out."""
    joint: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["error"] is None:
            joint.setdefault(row["method"], {})[row["triplet_id"]] = row["joint"]
    if against not in joint:
        raise ValueError(f"no scored rows of {against!r}; methods here: {', '.join(sorted(joint))}")
    return {method: asdict(paired(joint[against], verdicts)) for method, verdicts in joint.items()
            if method != against}
