"""95 % intervals (evaluation.scoring.stats), and the leaderboard, the report and bench all using them."""

import math

import pytest

from evaluation.presentation.views import build_database, query, user_query
from evaluation.scoring.judge_scores import summarise as bench_summary
from evaluation.scoring.stats import estimate, summarise
from orchestration.storage import Store


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 2), (1, 2), (2, 2), (0, 1), (3, 8), (24, 48), (48, 48)])
def test_binary_scores_get_wilson_intervals_inside_0_1(k, n):
    e = estimate([1.0] * k + [0.0] * (n - k), binary=True)
    low, high = wilson_by_hand(k, n)
    assert (e.n, e.mean, e.interval) == (n, k / n, "wilson")
    assert e.ci95_low == pytest.approx(low, abs=1e-9) and e.ci95_high == pytest.approx(high, abs=1e-9)
    assert 0.0 <= e.ci95_low <= e.mean <= e.ci95_high <= 1.0


def test_the_broken_case_of_the_old_leaderboard():
    """0.5 ± 6.35 was a t interval on a proportion at n = 2; Wilson gives [0.095, 0.905]."""
    e = estimate([1.0, 0.0], binary=True)
    assert (round(e.ci95_low, 3), round(e.ci95_high, 3)) == (0.095, 0.905)


@pytest.mark.parametrize("values", [
    [1.0, 2.0, 3.0, 4.0, 5.0],
    [0.01, 0.02, 0.015, 0.3, 0.012, 0.011],  # an MSE: skewed, never below 0
    [0.98, 0.99, -0.2, 0.97, 0.95, 0.99, 1.0, 0.96],  # a cosine: never outside [-1, 1]
    [float(i % 7) for i in range(50)],
])
def test_continuous_scores_get_bootstrap_intervals_inside_the_data(values):
    e = estimate(values, binary=False)
    assert e.interval == "bootstrap" and e.n == len(values) and e.mean == pytest.approx(sum(values) / len(values))
    assert min(values) <= e.ci95_low <= e.mean <= e.ci95_high <= max(values)
    assert e.ci95_low < e.ci95_high
    assert estimate(values, binary=False) == e  # a fixed seed: the same values, the same interval
    assert estimate(list(reversed(values)), binary=False).ci95_low == pytest.approx(e.ci95_low)


def test_continuous_scores_below_the_minimum_n_get_no_interval():
    from evaluation.scoring.stats import MIN_BOOTSTRAP_N

    few = [0.02, 0.31, 0.05, 0.2][: MIN_BOOTSTRAP_N - 1]
    e = estimate(few, binary=False)
    assert (e.n, e.ci95_low, e.ci95_high, e.interval) == (len(few), None, None, "none")
    assert e.mean == pytest.approx(sum(few) / len(few)) and e.text() == f"{e.mean:.3f} n={len(few)}"
    assert estimate([0.3], binary=False).ci95_low is None  # no interval from one value
    assert estimate([0.1, float("nan"), 0.3], binary=False).n == 2  # non-finite values are dropped
    assert estimate([0.1, float("inf"), 0.3, 0.2, 0.4, 0.5], binary=False).n == 5
    assert estimate([0.1, 0.3, 0.2, 0.4, 0.5], binary=False).interval == "bootstrap"


def test_equal_continuous_scores_get_a_point_interval(recwarn):
    e = estimate([0.1] * 7, binary=False)
    assert (e.n, e.mean, e.ci95_low, e.ci95_high, e.interval) == (7, 0.1, 0.1, 0.1, "bootstrap")
    assert not recwarn.list


def test_bootstrap_intervals_are_fast_enough_for_the_leaderboard():
    import random
    import time

    rng = random.Random(0)
    groups = [[rng.random() for _ in range(rng.randint(8, 50))] for _ in range(300)]
    start = time.perf_counter()
    for g in groups:
        estimate(g, binary=False)
    assert time.perf_counter() - start < 5.0  # ~0.25 s here; the leaderboard estimates a few hundred groups


def test_a_binary_metric_with_other_values_is_an_error():
    with pytest.raises(ValueError, match="0/1"):
        estimate([0.5, 1.0], binary=True)


def _metric_rows(values: dict[str, list[float]], metric: str) -> list[dict]:
    return [{"triplet_id": f"t{i}", "method": m, "config_hash": "h", "metric": metric, "value": v, "model_id": "x"}
            for m, vs in values.items() for i, v in enumerate(vs)]


def test_leaderboard_matches_python_and_keeps_its_columns(tmp_path):
    store = Store(tmp_path)
    cosines = {"m1": [0.1, 0.4, 0.2, 0.5, 0.3], "m2": [1.0, 1.0]}
    joint = {"m1": [1.0, 0.0], "m2": [1.0, 1.0]}
    rows = _metric_rows(cosines, "clip_direction") + _metric_rows(joint, "judge_joint")
    rows.append({**rows[0], "triplet_id": "nan", "value": float("nan")})  # ignored, not poisoning the mean
    store.write_table("metrics", "toy.000", rows[:4])
    store.write_table("metrics", "toy.001", rows[4:])  # two shards of one dataset pool together
    build_database(store.duckdb_path, tmp_path / "tables", store.tables_with_files())
    # a table with no files yet is an empty table in the file, readable by any client that opens it
    assert query(store.duckdb_path, "SELECT count(*) FROM judgements")[1] == [(0,)]
    sql = "SELECT method, metric, n, mean, ci95_low, ci95_high FROM leaderboard ORDER BY metric, method"
    _, got = query(store.duckdb_path, sql)
    want = summarise(rows, by=("method", "metric"))
    want.sort(key=lambda r: (r["metric"], r["method"]))
    assert len(got) == len(want) == 4
    for row, w in zip(got, want, strict=True):
        assert row[:3] == (w["method"], w["metric"], w["n"])
        for value, key in zip(row[3:], ("mean", "ci95_low", "ci95_high")):
            assert value == pytest.approx(w[key])
    # the 0/1 metric at n = 2 stays inside [0, 1]: the bar the old t interval failed
    (low, high), = query(store.duckdb_path, "SELECT ci95_low, ci95_high FROM leaderboard "
                                            "WHERE method = 'm1' AND metric = 'judge_joint'")[1]
    assert 0 <= low < 0.5 < high <= 1
    # a user's query sees the same table, computed from its own tables
    _, again = user_query(tmp_path / "tables", store.tables_with_files(), sql)
    assert again == got


def test_bench_summary_uses_the_same_intervals():
    rows = [{"changed": "colour", "joint": j, "target": 1.0, "keep": j} for j in (1.0, 0.0, 1.0)]
    s = bench_summary(rows)
    e = estimate([1.0, 0.0, 1.0], binary=True)
    assert s["joint"] == round(e.mean, 4) and s["ci95"]["joint"] == [round(e.ci95_low, 4), round(e.ci95_high, 4)]
    assert s["by_attribute"]["colour"]["n"] == 3


def test_paired_counts_discordant_triplets_and_signs_tests_them():
    from dataclasses import asdict

    from evaluation.scoring.stats import difference_text, paired

    first = {f"t{i}": 1.0 for i in range(12)} | {"t12": 0.0, "t13": 0.0, "only_first": 1.0}
    second = {f"t{i}": 0.0 for i in range(9)} | {"t9": 1.0, "t10": 1.0, "t11": 1.0, "t12": 0.0, "t13": 1.0,
                                                   "only_second": 0.0, "missing": float("nan")}
    c = paired(first, second)  # on t0..t13: 9 only first, 1 only second (t13), 3 both, 1 neither
    assert (c.first_only, c.second_only, c.both, c.neither) == (9, 1, 3, 1)
    assert c.p_value == pytest.approx(2 * (1 + 10) / 2**10)  # exact two-sided sign test, 9 of 10
    assert paired(second, first).p_value == pytest.approx(c.p_value)
    assert paired(first, first).p_value == 1.0  # nothing discordant
    # the difference of the joint rates over the 14 shared triplets, (9 − 1) / 14, inside its interval
    assert c.difference == pytest.approx(8 / 14)
    assert c.difference_low < c.difference < c.difference_high
    flipped = paired(second, first)
    assert (flipped.difference, flipped.difference_low) == pytest.approx((-c.difference, -c.difference_high))
    same = paired(first, first)  # nothing discordant: no difference, and still an interval around it
    assert same.difference == 0.0 and same.difference_low < 0 < same.difference_high
    assert difference_text(asdict(c)) == f"+0.571 [{c.difference_low:+.3f}, {c.difference_high:+.3f}]"
    assert difference_text(asdict(paired({}, {}))) == "none"
    with pytest.raises(ValueError, match="0/1"):
        paired({"t": 0.5}, {"t": 1.0})


def test_paired_difference_is_newcombes_square_and_add_interval():
    """Newcombe's interval for paired proportions (1998, method 10) on the worked example of Fagerland,
    Lydersen and Laake, Statistical Analysis of Contingency Tables (2017), ch. 8: Cavo et al. (2012),
    59 both, 6 only before, 16 only after, 80 neither → −0.0621 [−0.1186, −0.0046]."""
    from evaluation.scoring.stats import paired_difference

    d, low, high = paired_difference(59, 6, 16, 80)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (-0.0621, -0.1186, -0.0046)
    # all discordant triplets one way: the interval still reaches past the estimate (the share of
    # discordant triplets is itself estimated), unlike an interval taken given their number
    d, low, high = paired_difference(0, 38, 0, 10)
    assert d == pytest.approx(38 / 48) and high > d
    assert paired_difference(0, 0, 0, 0) == (None, None, None)


def test_paired_scores_are_a_t_interval_and_wilcoxons_test_on_the_differences():
    """Darwin's Zea mays data (crossed minus self-fertilised heights, eighths of an inch; Fisher, The Design
    of Experiments, 1935): mean 20.93, 95 % t interval [0.03, 41.84] (t = 2.148, 14 df) and the exact
    two-sided Wilcoxon signed-rank p = 0.0413 (W = 24)."""
    from dataclasses import asdict

    from evaluation.scoring.stats import difference_text, paired_scores

    d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
    crossed = {f"t{i}": 100.0 + x for i, x in enumerate(d)} | {"only_first": 1.0, "t_nan": float("nan")}
    selfed = {f"t{i}": 100.0 for i in range(len(d))} | {"only_second": 1.0, "t_nan": 3.0}
    c = paired_scores(crossed, selfed)
    assert c.n == 15 and c.difference == pytest.approx(314 / 15)
    assert (round(c.difference_low, 2), round(c.difference_high, 2)) == (0.03, 41.84)
    assert round(c.p_value, 4) == 0.0413
    flipped = paired_scores(selfed, crossed)
    assert (flipped.difference, flipped.difference_low, flipped.p_value) == pytest.approx(
        (-c.difference, -c.difference_high, c.p_value))
    assert difference_text(asdict(c), 2) == "+20.93 [+0.03, +41.84]"
    assert paired_scores(crossed, crossed).p_value == 1.0  # every difference zero
    one = paired_scores({"t": 2.0}, {"t": 1.0})  # one triplet: a difference, no interval
    assert (one.n, one.difference, one.difference_low) == (1, 1.0, None) and difference_text(asdict(one)) == "+1.000"
    assert paired_scores({}, {}).difference is None and difference_text(asdict(paired_scores({}, {}))) == "none"
