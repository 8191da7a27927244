"""Ground-truth scores of the toy world, read off B′ by the judge CLIP.

target: B′ shows A′'s value of the changed attribute;
keep:   B′ keeps every other attribute of B;
joint:  both (the toy benchmark's headline number).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

from evaluation.scoring.stats import estimate

SCORES = ("joint", "target", "keep")


def judge_triplet(read: dict[str, str], b_attrs: dict[str, str], b_prime_gt_attrs: dict[str, str],
                  changed: str) -> dict[str, float]:
    target = read[changed] == b_prime_gt_attrs[changed]
    keep = all(read[name] == value for name, value in b_attrs.items() if name != changed)
    return {"target": float(target), "keep": float(keep), "joint": float(target and keep)}


def summarise(rows: list[dict]) -> dict:
    """rows: {'changed', 'target', 'keep', 'joint'} per triplet → the `analogy bench` summary
    {joint, target, keep, n, ci95: {score: [low, high]}, by_attribute: {attr: {…the same}}}, the
    intervals Wilson's (evaluation.scoring.stats: these are 0/1 verdicts)."""

    def block(subset: list[dict]) -> dict:
        if not subset:
            return {key: math.nan for key in SCORES} | {"n": 0, "ci95": {}}
        estimates = {key: estimate([r[key] for r in subset], binary=True) for key in SCORES}
        return ({key: round(e.mean, 4) for key, e in estimates.items()} | {"n": len(subset)}
                | {"ci95": {key: [round(e.ci95_low, 4), round(e.ci95_high, 4)] for key, e in estimates.items()}})

    by_attr = defaultdict(list)
    for row in rows:
        by_attr[row["changed"]].append(row)
    return block(rows) | {"by_attribute": {attr: block(sub) for attr, sub in sorted(by_attr.items())}}


def judge_rows(triplets: list[dict], generations: list[dict], judge, load) -> list[dict]:
    """`metrics` rows judge_target / judge_keep / judge_joint for every successful generation
    of a triplet with toy attributes (`extra.attrs`, `extra.changed`); `load(hash) -> PIL`."""
    by_id = {t["triplet_id"]: json.loads(t["extra"] or "{}") for t in triplets}
    todo = [(g, by_id[g["triplet_id"]]) for g in generations
            if not g["error"] and "attrs" in by_id.get(g["triplet_id"], {}) and "changed" in by_id[g["triplet_id"]]]
    reads = judge.read([load(g["b_prime_hash"]) for g, _ in todo]) if todo else []
    rows = []
    for (g, extra), read in zip(todo, reads):
        scores = judge_triplet(read, extra["attrs"]["b"], extra["attrs"]["b_prime_gt"], extra["changed"])
        rows += [{"triplet_id": g["triplet_id"], "method": g["method"], "config_hash": g["config_hash"],
                  "metric": f"judge_{name}", "value": value, "model_id": judge.clip.model_id}
                 for name, value in scores.items()]  # names: evaluation.scoring.stats.BINARY_METRICS
    return rows
