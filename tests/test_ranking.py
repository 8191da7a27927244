"""evaluation.scoring.ranking: the Bradley–Terry fit (hand-worked, score equations, choix) and rank_methods."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from evaluation.scoring.ranking import ALPHA, RANKING_COLUMNS, bradley_terry, rank_methods


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _vote(task, first, second, outcome):
    return {"task": task, "first": first, "second": second, "outcome": outcome}


def _round_robin(n_tasks, strengths, seed, ties=0.1):
    """Every pair of methods once per task, the outcome drawn from the Bradley–Terry model (some ties)."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    votes = []
    for t in range(n_tasks):
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                u = rng.random()
                p = _sigmoid(strengths[a] - strengths[b])
                outcome = "tie" if u < ties else ("first" if u < ties + (1 - ties) * p else "second")
                votes.append(_vote(f"t{t}", a, b, outcome))
    return votes


# --- bradley_terry ------------------------------------------------------------------------------------------------


def test_two_methods_three_to_one_is_half_log_three():
    s = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]), alpha=0.0)
    assert s == pytest.approx([math.log(3) / 2, -math.log(3) / 2], abs=1e-8)


def test_three_method_mle_solves_the_score_equations():
    wins = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 4.0], [1.0, 1.0, 0.0]])
    s = bradley_terry(wins, alpha=0.0)
    games = wins + wins.T
    expected = (games * _sigmoid(s[:, None] - s[None, :])).sum(1)
    assert wins.sum(1) == pytest.approx(expected, abs=1e-8)
    assert s.mean() == pytest.approx(0.0, abs=1e-12)
    assert s.argmin() == 2  # c won 2 of 7


def test_prior_enters_the_score_equations():
    wins = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 4.0], [1.0, 1.0, 0.0]])
    s = bradley_terry(wins, alpha=0.5)
    games = wins + wins.T
    expected = (games * _sigmoid(s[:, None] - s[None, :])).sum(1) + 0.5 * s
    assert wins.sum(1) == pytest.approx(expected, abs=1e-8)
    assert np.abs(s).max() < np.abs(bradley_terry(wins, alpha=0.0)).max()  # shrunk towards 0


def test_batched_fit_equals_one_fit_at_a_time():
    rng = np.random.default_rng(3)
    stack = rng.poisson(2.0, (5, 4, 4)).astype(float)
    stack[:, np.arange(4), np.arange(4)] = 0
    batched = bradley_terry(stack)
    for k in range(5):
        assert batched[k] == pytest.approx(bradley_terry(stack[k]), abs=1e-9)


def test_undefeated_method_gets_a_finite_strength_with_the_prior():
    wins = np.array([[0.0, 20.0, 20.0], [0.0, 0.0, 5.0], [0.0, 5.0, 0.0]])
    s = bradley_terry(wins)
    assert np.all(np.isfinite(s))
    assert 3 < s[0] < 15
    assert s[1] == pytest.approx(s[2], abs=1e-9)


def test_disconnected_graph_at_alpha_zero_does_not_raise():
    # a bootstrap resample can leave two methods that never met; the fit must still return finite numbers
    wins = np.zeros((4, 4))
    wins[0, 1] = wins[1, 0] = 2.0
    wins[2, 3], wins[3, 2] = 3.0, 1.0
    s = bradley_terry(wins, alpha=0.0)
    assert np.all(np.isfinite(s))
    assert s[2] - s[3] == pytest.approx(math.log(3), abs=1e-8)
    assert s[0] == pytest.approx(s[1], abs=1e-9)


def _choix_data(seed):
    """300 tie-free comparisons of 7 methods, every method with wins and losses against several others."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0.0, 0.7, 7)
    data = []
    for _ in range(300):
        i, j = rng.choice(7, 2, replace=False)
        data.append((i, j) if rng.random() < _sigmoid(true[i] - true[j]) else (j, i))
    wins = np.zeros((7, 7))
    for w, loser in data:
        wins[w, loser] += 1
    assert np.all(wins.sum(1) > 0) and np.all(wins.sum(0) > 0)
    return data, wins


def test_matches_choix_map_estimate():
    choix = pytest.importorskip("choix")
    data, wins = _choix_data(seed=11)
    # choix minimises  Σ log(1 + exp(−(s_w − s_l))) + alpha·‖s‖²  (choix/opt.py, PairwiseFcts): alpha = α/2
    theirs = choix.opt_pairwise(7, data, alpha=ALPHA / 2, tol=1e-12)
    assert bradley_terry(wins, ALPHA) == pytest.approx(theirs - theirs.mean(), abs=1e-6)


def test_matches_choix_mle():
    choix = pytest.importorskip("choix")
    data, wins = _choix_data(seed=12)
    theirs = choix.ilsr_pairwise(7, data, alpha=0.0, tol=1e-12)  # centred log-strengths, unpenalised MLE
    assert bradley_terry(wins, alpha=0.0) == pytest.approx(theirs, abs=1e-6)


# --- rank_methods -------------------------------------------------------------------------------------------------


def test_empty_votes_give_no_rows():
    assert rank_methods([]) == []


def test_a_tie_is_half_a_win_to_each():
    votes = [_vote("t1", "a", "b", "tie"), _vote("t2", "a", "b", "first")]
    rows = {r["method"]: r for r in rank_methods(votes, resamples=20)}
    s = bradley_terry(np.array([[0.0, 1.5], [0.5, 0.0]]))
    assert rows["a"]["strength"] == pytest.approx(s[0], abs=1e-9)
    assert rows["b"]["strength"] == pytest.approx(s[1], abs=1e-9)
    assert rows["a"]["mean_win_rate"] == pytest.approx(0.75)
    # at alpha = 0 this is the 3 : 1 example above
    rows0 = {r["method"]: r for r in rank_methods(votes, resamples=20, alpha=0.0)}
    assert rows0["a"]["strength"] == pytest.approx(math.log(3) / 2, abs=1e-8)


def test_rows_columns_order_and_dominant_method():
    votes = _round_robin(30, {"d": 0.0, "e": 0.2, "f": -0.3, "g": 0.1}, seed=5)
    votes += [_vote(f"t{t}", "a", other, "first") for t in range(30) for other in "defg"]
    rows = rank_methods(votes, resamples=300)
    assert [tuple(r) for r in rows] == [RANKING_COLUMNS] * 5
    assert [r["strength"] for r in rows] == sorted((r["strength"] for r in rows), reverse=True)
    top = rows[0]
    assert top["method"] == "a"
    assert (top["rank"], top["rank_low"], top["rank_high"]) == (1, 1, 1)
    assert math.isfinite(top["strength"]) and math.isfinite(top["ci_high"])  # wins every vote, still finite
    assert top["mean_win_rate"] == 1.0
    assert top["votes"] == 120 and all(r["votes"] == 30 * 4 for r in rows[1:])
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(1 <= r["rank_low"] <= r["rank"] <= r["rank_high"] <= 5 for r in rows)
    assert all(isinstance(r["rank_low"], int) and isinstance(r["strength"], float) for r in rows)
    assert sum(r["strength"] for r in rows) == pytest.approx(0.0, abs=1e-9)


def test_ci_always_contains_the_strength():
    votes = _round_robin(12, {"a": 0.5, "b": 0.0, "c": -0.2}, seed=8)
    for rows in (rank_methods(votes, resamples=200), rank_methods(votes, resamples=1)):
        assert all(r["ci_low"] <= r["strength"] <= r["ci_high"] for r in rows)
    # with one resample the percentile "interval" is that resample's strength: the widening must show
    rows = rank_methods(votes, resamples=1)
    assert all(r["strength"] in (r["ci_low"], r["ci_high"]) for r in rows)
    assert any(r["ci_high"] - r["ci_low"] > 1e-6 for r in rows)


def test_same_seed_same_rows_other_seed_other_intervals():
    votes = _round_robin(20, {"a": 0.4, "b": 0.0, "c": -0.1, "d": -0.3}, seed=9)
    first = rank_methods(votes, resamples=200, seed=3)
    assert rank_methods(votes, resamples=200, seed=3) == first
    other = rank_methods(votes, resamples=200, seed=4)
    assert [r["strength"] for r in other] == [r["strength"] for r in first]
    assert [r["ci_low"] for r in other] != [r["ci_low"] for r in first]


def test_equal_strengths_share_the_better_rank():
    votes = [_vote("t1", "a", "b", "first"), _vote("t1", "b", "c", "first"), _vote("t1", "c", "a", "first")]
    rows = rank_methods(votes, resamples=10)
    assert [r["rank"] for r in rows] == [1, 1, 1]
    assert [r["method"] for r in rows] == ["a", "b", "c"]


def test_mean_win_rate_is_a_mean_over_opponents():
    votes = [
        _vote("t1", "a", "b", "first"),
        _vote("t2", "b", "a", "tie"),  # a vs b: 1.5 of 2 -> 0.75
        _vote("t1", "c", "a", "first"),  # a vs c: 0 of 1
    ]
    rows = {r["method"]: r for r in rank_methods(votes, resamples=10)}
    assert rows["a"]["mean_win_rate"] == pytest.approx((0.75 + 0.0) / 2)  # pooled would be 1.5 / 3 = 0.5
    assert rows["b"]["mean_win_rate"] == pytest.approx(0.25)  # never met c: only a counts
    assert rows["c"]["mean_win_rate"] == pytest.approx(1.0)
    assert (rows["a"]["votes"], rows["b"]["votes"], rows["c"]["votes"]) == (3, 2, 1)


def test_bootstrap_resamples_tasks_not_votes():
    pairs = [("a", "b", "first")] * 6 + [("a", "b", "second")] * 3 + [("b", "c", "first")] * 5 + [("c", "b", "first")]
    one_task = [_vote("only", *p) for p in pairs]
    rows = rank_methods(one_task, resamples=200)
    # one task: every resample is that task with all its votes, so no spread at all
    assert all(r["ci_low"] == pytest.approx(r["strength"], abs=1e-9) for r in rows)
    assert all(r["ci_high"] == pytest.approx(r["strength"], abs=1e-9) for r in rows)
    assert all(r["rank_low"] == r["rank"] == r["rank_high"] for r in rows)
    # the same votes, one task each: now the resamples differ
    spread = rank_methods([_vote(f"t{k}", *p) for k, p in enumerate(pairs)], resamples=200)
    assert [r["strength"] for r in spread] == pytest.approx([r["strength"] for r in rows], abs=1e-12)
    assert all(r["ci_high"] - r["ci_low"] > 0.1 for r in spread)


def test_bad_votes_are_refused():
    with pytest.raises(ValueError, match="outcome"):
        rank_methods([_vote("t", "a", "b", "draw")])
    with pytest.raises(ValueError, match="itself"):
        rank_methods([_vote("t", "a", "a", "tie")])


def test_thousand_resamples_of_seven_methods_are_fast():
    votes = _round_robin(50, {f"m{i}": 0.2 * i for i in range(7)}, seed=1)
    rank_methods(votes, resamples=50)  # warm up
    start = time.perf_counter()
    rows = rank_methods(votes, resamples=1000)
    assert time.perf_counter() - start < 1.0
    assert rows[0]["method"] == "m6" and rows[-1]["method"] == "m0"


def test_rankings_rank_example_only_methods_apart_and_per_category():
    from evaluation.scoring.ranking import rankings

    def pair(task, category, method, opponent, choice, privileged=()):
        return [{"dataset": "toy", "judge_id": "j", "task": task, "triplet_id": task, "category": category,
                 "method": method, "opponent": opponent, "ask": ask, "choice": choice, "consistent": True,
                 "error": None, "method_privileged": method in privileged,
                 "opponent_privileged": opponent in privileged} for ask in (1, 2)]

    rows = []
    for i in range(4):
        category = "size" if i % 2 else "colour"
        rows += pair(f"t{i}", category, "di", "no_edit", "di", ("ip2p",))
        rows += pair(f"t{i}", category, "di", "ip2p", "ip2p", ("ip2p",))
        rows += pair(f"t{i}", category, "ip2p", "no_edit", "ip2p", ("ip2p",))
    out = rankings(rows, resamples=50)
    groups = {(r["category"], r["pool"]): [(r["method"], r["privileged"]) for r in out
                                           if (r["category"], r["pool"]) == (r["category"], r["pool"])] for r in out}
    assert set(groups) == {(c, p) for c in ("all", "size", "colour") for p in ("example_only", "all")}
    example = [r for r in out if r["category"] == "all" and r["pool"] == "example_only"]
    assert [(r["method"], r["rank"], r["votes"]) for r in example] == [("di", 1, 4), ("no_edit", 2, 4)]
    everyone = [r for r in out if r["category"] == "all" and r["pool"] == "all"]
    assert [(r["method"], r["privileged"]) for r in everyone] == [("ip2p", True), ("di", False), ("no_edit", False)]
    assert all(r["votes"] == 4 for r in out if r["category"] == "size" and r["pool"] == "all")
