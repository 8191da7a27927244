"""95% confidence intervals, in Python and in the leaderboard SQL view."""

import math

import pytest

from evaluation.stats import mean_ci95, t975
from evaluation.views import build_database, query
from orchestration.storage import Store


def t_cdf(x: float, df: int, steps: int = 20000) -> float:
    """Student's t CDF by Simpson integration of the density (independent of the table)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    pdf = lambda t: c * (1 + t * t / df) ** (-(df + 1) / 2)  # noqa: E731
    h = x / steps
    total = pdf(0) + pdf(x) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 0.5 + total * h / 3


@pytest.mark.parametrize("df", [1, 2, 5, 15, 30, 31, 45, 100, 1000])
def test_t_quantile_is_the_975th_percentile(df):
    assert t_cdf(t975(df), df) == pytest.approx(0.975, abs=2e-5)


def test_mean_ci95_by_hand():
    mean, half = mean_ci95([1.0, 2.0, 3.0, 4.0])
    # sd = 1.29099, se = 0.645497, t(3) = 3.182446
    assert mean == 2.5 and half == pytest.approx(3.182446 * 1.2909944 / 2, rel=1e-6)
    assert mean_ci95([0.3]) == (0.3, None)


def test_leaderboard_view_matches_python(tmp_path):
    store = Store(tmp_path)
    values = {"m1": [0.1, 0.4, 0.2, 0.5, 0.3], "m2": [1.0, 1.0]}
    rows = [{"triplet_id": f"t{i}", "method": m, "config_hash": "h", "metric": "clip_direction", "value": v,
             "model_id": "x"} for m, vs in values.items() for i, v in enumerate(vs)]
    rows.append({**rows[0], "triplet_id": "nan", "value": float("nan")})  # ignored, not poisoning the mean
    store.write_table("metrics", "toy.000", rows[:4])
    store.write_table("metrics", "toy.001", rows[4:])  # two shards of one dataset pool together
    build_database(store.duckdb_path, tmp_path / "tables", store.tables_with_files())
    _, got = query(store.duckdb_path, "SELECT method, n, mean, ci95 FROM leaderboard ORDER BY method")
    for (method, n, mean, ci), name in zip(got, ["m1", "m2"], strict=True):
        want_mean, want_ci = mean_ci95(values[name])
        assert (method, n) == (name, len(values[name]))
        assert mean == pytest.approx(want_mean) and ci == pytest.approx(want_ci)
