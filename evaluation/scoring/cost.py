"""What each B′ cost, as metric rows beside its scores (so the leaderboard, the report and the plot
summarise cost as they summarise quality, per category too):

- `seconds_per_task`: the wall time of generating this B′ plus its share of the per-pair work it
  used (Difference Inversion's D̃, VISII's learned instruction: the pair's training time divided by
  the number of this method's B′ that used that pair's result, so one-off training is amortised over
  the triplets it served);
- `peak_memory_mb`: the larger of the generation's and that training's peak memory (CUDA allocated
  memory on a GPU, the process's resident set on CPU: orchestration.peak_memory).
"""

from __future__ import annotations

from collections import Counter

COST_METRICS = ("seconds_per_task", "peak_memory_mb")
COST_MODEL_ID = "cost"


def cost_rows(triplets: list[dict], generations: list[dict], prepared: list[dict]) -> list[dict]:
    """Metric rows (`metrics` schema) of every B′ in `generations` (of `triplets`); `prepared`: the per-pair rows of the
    method intermediates (`diff_tokens`, `visii_instructions`: variant = the method's label, a_hash,
    a_prime_hash, seconds, peak_memory_mb)."""
    made = [g for g in generations if not g["error"] and g["b_prime_hash"]]
    pairs = {(p["variant"], p["a_hash"], p["a_prime_hash"]): p for p in prepared if not p.get("error")}
    example = {t["triplet_id"]: (t["a_hash"], t["a_prime_hash"]) for t in triplets}
    pair_of = {(g["triplet_id"], g["method"]): (g["method"], *example.get(g["triplet_id"], (None, None)))
               for g in made}
    users = Counter(pair_of.values())  # B′ per (method, pair): the triplets a pair's training is spread over
    rows = []
    for g in made:
        key = pair_of[(g["triplet_id"], g["method"])]
        pair = pairs.get(key, {})
        seconds = g["seconds"]
        if seconds is not None and pair.get("seconds") is not None:
            seconds += pair["seconds"] / users[key]
        peaks = [m for m in (g.get("peak_memory_mb"), pair.get("peak_memory_mb")) if m is not None]
        for metric, value in zip(COST_METRICS, (seconds, max(peaks) if peaks else None)):
            if value is not None:
                rows.append({"triplet_id": g["triplet_id"], "method": g["method"], "config_hash": g["config_hash"],
                             "metric": metric, "value": float(value), "model_id": COST_MODEL_ID})
    return rows
