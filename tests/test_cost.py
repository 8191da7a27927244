"""What each B′ cost: generation time plus its share of one-off per-pair training, and peak memory."""

import numpy as np
import pytest

from evaluation.scoring.cost import cost_rows
from orchestration.peak_memory import PeakMemory

TRIPLETS = [{"triplet_id": t, "a_hash": a, "a_prime_hash": a + "'"} for t, a in (("t0", "p"), ("t1", "p"), ("t2", "q"))]


def generation(triplet, method, seconds, peak=100.0, error=None):
    return {"triplet_id": triplet, "method": method, "config_hash": "h", "b_prime_hash": None if error else "x",
            "seconds": seconds, "peak_memory_mb": peak, "error": error}


def test_per_pair_training_is_spread_over_the_triplets_that_used_it():
    generations = [generation("t0", "di", 1.0), generation("t1", "di", 2.0), generation("t2", "di", 1.0),
                   generation("t0", "no_edit", 0.5), generation("t1", "no_edit", 0.0, error="boom")]
    prepared = [{"variant": "di", "a_hash": "p", "a_prime_hash": "p'", "seconds": 10.0, "peak_memory_mb": 900.0},
                {"variant": "di", "a_hash": "q", "a_prime_hash": "q'", "seconds": 4.0, "peak_memory_mb": 50.0},
                {"variant": "other", "a_hash": "p", "a_prime_hash": "p'", "seconds": 99.0, "peak_memory_mb": 1e6}]
    rows = {(r["triplet_id"], r["method"], r["metric"]): r["value"] for r in cost_rows(TRIPLETS, generations, prepared)}
    # pair p served two of di's triplets (5 s each on top), pair q one; a failed B′ costs nothing here
    assert rows[("t0", "di", "seconds_per_task")] == 6.0 and rows[("t1", "di", "seconds_per_task")] == 7.0
    assert rows[("t2", "di", "seconds_per_task")] == 5.0 and rows[("t0", "no_edit", "seconds_per_task")] == 0.5
    assert rows[("t0", "di", "peak_memory_mb")] == 900.0 and rows[("t2", "di", "peak_memory_mb")] == 100.0
    assert ("t1", "no_edit", "seconds_per_task") not in rows and len(rows) == 8


def test_peak_memory_sees_a_short_allocation_inside_the_block():
    with PeakMemory("cpu") as idle:
        pass
    with PeakMemory("cpu") as busy:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        del block
    assert busy.mb - idle.mb > 150


def test_peak_memory_samples_where_the_kernel_peak_cannot_be_reset(monkeypatch):
    import orchestration.peak_memory as pm

    monkeypatch.setattr(pm, "_CLEAR_REFS", pm.Path("/nonexistent/clear_refs"))
    with PeakMemory("cpu") as idle:
        pass
    with PeakMemory("cpu") as busy:
        block = np.ones(200 * 2**20 // 8)
        import time

        time.sleep(0.1)  # the sampler reads every 10 ms
        del block
    assert busy.mb - idle.mb == pytest.approx(200, abs=50)
