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

from evaluation.ingestion.images import decode_image
from evaluation.scoring.judge_scores import judge_triplet, summarise
from evaluation.scoring.metrics import pixel_mse_psnr
from evaluation.scoring.stats import estimate, paired, paired_scores
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
    """{spec: {joint, target, keep, n, by_attribute, gt_psnr, errors, seconds_per_triplet}}. With
    `rows_out`, also appends one row per (spec, triplet): {method, triplet_id, changed, target, keep, joint,
    gt_psnr, error}, so that two methods can be compared triplet by triplet (paired). `gt_psnr`: B′'s PSNR
    (dB) against the file's B′gt, a continuous closeness that sees what the judge's four 0/1 readings cannot.
    A method with a `prepare` hook (Difference Inversion) first prepares every triplet's pair, `batch_size`
    at a time."""
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
            for row in rows:
                try:
                    pairs.append(tuple(decode_image(row[f"{k}_png"]).image for k in ("a", "a_prime")))
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
                  | {"gt_psnr": gt_psnr(image, row)}
                  for (row, image), read in zip(outputs, reads)]
        psnr = [r["gt_psnr"] for r in scored if r["gt_psnr"] is not None]
        results[spec] = (summarise(scored) | {"gt_psnr": asdict(estimate(psnr, binary=False)) if psnr else None}
                         | {"errors": errors, "seconds_per_triplet": round(seconds, 3)})
        if rows_out is not None:
            rows_out += [{"method": spec, "triplet_id": row["triplet_id"], "error": None} | score
                         for (row, _), score in zip(outputs, scored)]  # score: changed, target, keep, joint
            rows_out += [{"method": spec, "triplet_id": e["triplet_id"], "error": e["error"]} for e in errors]
    return results


def gt_psnr(image, row: dict) -> float | None:
    """B′'s PSNR against the benchmark row's B′gt (None where the file has no B′gt)."""
    if not row.get("b_prime_gt_png"):
        return None
    return pixel_mse_psnr(image, decode_image(row["b_prime_gt_png"]).image)[1]


ROWS_SCHEMA = pa.schema([("method", pa.string()), ("triplet_id", pa.string()), ("changed", pa.string()),
                         ("target", pa.float64()), ("keep", pa.float64()), ("joint", pa.float64()),
                         ("gt_psnr", pa.float64()), ("error", pa.string())])
SCORES = ("joint", "gt_psnr")
"""What `paired_against` compares: the joint verdict (sign test) or the PSNR to B′gt (Wilcoxon)."""


def write_rows(rows: list[dict], path: Path) -> None:
    """`run_bench`'s per-triplet rows as Parquet (an error row's scores are null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ROWS_SCHEMA), path)


def paired_against(rows: list[dict], against: str, score: str = "joint") -> dict[str, dict]:
    """{other method: evaluation.scoring.stats.Paired (score 'joint') or PairedScores ('gt_psnr') as a dict} on
    `run_bench`'s rows (or `--rows` files read back, as `python -m benchmarks.paired` does): `against` compared with
    every other method, triplet by triplet; error rows and rows without the score (files written before
    `gt_psnr` was recorded) are left out."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; one of {', '.join(SCORES)}")
    values: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["error"] is None and row.get(score) is not None:
            values.setdefault(row["method"], {})[row["triplet_id"]] = row[score]
    if against not in values:
        raise ValueError(f"no rows of {against!r} with a {score}; methods here: {', '.join(sorted(values))}")
    compare = paired if score == "joint" else paired_scores
    return {method: asdict(compare(values[against], scores)) for method, scores in values.items()
            if method != against}
