"""Ground-truth scores of the toy world, read off B′ by the judge CLIP.

target: B′ shows A′'s value of the changed attribute;
keep:   B′ keeps every other attribute of B;
joint:  both (the toy benchmark's headline number).
"""

from __future__ import annotations

import math
from collections import defaultdict


def judge_triplet(read: dict[str, str], b_attrs: dict[str, str], b_prime_gt_attrs: dict[str, str],
                  changed: str) -> dict[str, float]:
    target = read[changed] == b_prime_gt_attrs[changed]
    keep = all(read[name] == value for name, value in b_attrs.items() if name != changed)
    return {"target": float(target), "keep": float(keep), "joint": float(target and keep)}


def summarise(rows: list[dict]) -> dict:
    """rows: {'changed', 'target', 'keep', 'joint'} per triplet → the `analogy bench` summary
    {joint, target, keep, n, by_attribute: {attr: {joint, target, keep, n}}}."""

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 4) if values else math.nan

    def block(subset: list[dict]) -> dict:
        return {key: mean([r[key] for r in subset]) for key in ("joint", "target", "keep")} | {"n": len(subset)}

    by_attr = defaultdict(list)
    for row in rows:
        by_attr[row["changed"]].append(row)
    return block(rows) | {"by_attribute": {attr: block(sub) for attr, sub in sorted(by_attr.items())}}
