"""95 % confidence intervals, in one place, on SciPy.

- A 0/1 score (a judge's verdict: `judge_target`, `judge_keep`, `judge_joint`) is a proportion:
  its interval is Wilson's score interval (`scipy.stats.binomtest(...).proportion_ci("wilson")`),
  which stays inside [0, 1] and is defined at any n ≥ 1 (at n = 2 and 1 of 2, [0.095, 0.905]).
- A continuous score (a cosine, a distance, seconds, megabytes) gets a percentile bootstrap interval of
  the mean (`scipy.stats.bootstrap`, method="percentile", 2,000 resamples, a fixed seed so the same values
  always give the same interval). Its ends are means of resampled values, so they stay inside
  [min, max] of the data and so inside the metric's own range: Student's t (mean ± t·sd/√n) did not, and
  at n = 2 printed a cosine interval of [−4.5, 5.6] and a negative MSE. All values equal → [v, v].
  None below n = MIN_BOOTSTRAP_N = 5: a sample of n < 5 has at most 35 distinct resamples, too few for
  percentiles to mean anything, and the percentile interval is then far too narrow (at n = 4 about half
  the width of t's): `interval` is "none" and ci95_low/high None, which tables print as no interval.

`summarise` is what the leaderboard (evaluation.presentation.views), the report (evaluation.presentation.report) and
`analogy bench` (evaluation.scoring.judge_scores) all call, so a number means the same everywhere.

Two methods scored on the same triplets are compared pair by pair (`paired`): the triplets only one
of them got right, and the exact two-sided sign test on those (`scipy.stats.binomtest`, p = 0.5),
which is what "A beats B in paired comparisons" means in this project's results. Beside it, how far
apart the two can be: the difference of their joint rates, (only first − only second) / n, with
Newcombe's square-and-add interval for paired proportions (Newcombe 1998, method 10): the Wilson
intervals of the two rates, combined with the estimated correlation between them. A continuous score
compared triplet by triplet (`paired_scores`; `analogy bench`'s `gt_psnr`, closeness to B′gt, which sees
differences a 0/1 verdict cannot) gets the mean of the differences with Student's t interval (a difference
has no fixed range to leave, and t is what the paired literature reports; `_t_interval`) and the
two-sided Wilcoxon signed-rank test on them (`scipy.stats.wilcoxon`).
"""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _stats

BINARY_METRICS = frozenset({"judge_target", "judge_keep", "judge_joint"})
"""The 0/1 metrics (one verdict per triplet): Wilson intervals. Every other metric is continuous."""

CONFIDENCE = 0.95

MIN_BOOTSTRAP_N = 5
"""Below this n a continuous score gets no interval: n < 5 has ≤ 35 distinct resamples, too few for percentiles."""
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
# SciPy ≥ 1.15 names the generator `rng`; 1.14 (pyproject allows it) `random_state`: both take a Generator.
_SEED_ARG = "rng" if "rng" in inspect.signature(_stats.bootstrap).parameters else "random_state"


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95 % interval (low/high None where there is none: a continuous score below
    MIN_BOOTSTRAP_N values)."""

    n: int
    mean: float
    ci95_low: float | None
    ci95_high: float | None
    interval: str  # "wilson" | "bootstrap" | "none"

    def text(self, digits: int = 3) -> str:
        """'0.500 [0.095, 0.905] n=2' (what tables print)."""
        if self.ci95_low is None:
            return f"{self.mean:.{digits}f} n={self.n}"
        return f"{self.mean:.{digits}f} [{self.ci95_low:.{digits}f}, {self.ci95_high:.{digits}f}] n={self.n}"


def estimate(values: Iterable[float], *, binary: bool) -> Estimate:
    """Mean and 95 % interval of `values` (NaN and ±inf dropped). `binary`: the values are 0/1
    verdicts (Wilson); else continuous (percentile bootstrap, none below MIN_BOOTSTRAP_N values)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        raise ValueError("no finite values to summarise")
    mean = sum(finite) / n
    if binary:
        if any(v not in (0.0, 1.0) for v in finite):
            raise ValueError(f"a 0/1 score has values other than 0 and 1: {sorted(set(finite))[:5]}")
        ci = _stats.binomtest(round(mean * n), n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
        return Estimate(n, mean, float(ci.low), float(ci.high), "wilson")
    if n < MIN_BOOTSTRAP_N:
        return Estimate(n, mean, None, None, "none")
    low, high = min(finite), max(finite)
    if low == high:  # nothing to resample: the interval is the value (and the mean is it exactly)
        return Estimate(n, low, low, high, "bootstrap")
    ci = _stats.bootstrap((np.sort(finite),), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                          confidence_level=CONFIDENCE, vectorized=True, axis=-1,
                          **{_SEED_ARG: np.random.default_rng(BOOTSTRAP_SEED)}).confidence_interval
    # Sorted: the same values in any order (shards, SQL) give the same interval. Clipped: a resample's mean
    # can pass min/max by a rounding error, and numpy's mean can differ from `mean` in the last digit.
    return Estimate(n, mean, max(low, min(float(ci.low), mean)), min(high, max(float(ci.high), mean)), "bootstrap")


def _t_interval(values: list[float]) -> tuple[float, float | None, float | None]:
    """(mean, low, high): Student's t 95 % interval, mean ± t(0.975, n−1)·sd/√n (low/high None below n = 2)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    half = float(_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def is_binary(metric: str) -> bool:
    return metric in BINARY_METRICS


def summarise(rows: Iterable[dict], by: tuple[str, ...] = ("method", "metric")) -> list[dict]:
    """Group metric rows ({…by, 'metric', 'value'}) by `by` and estimate each group:
    [{…by, n, mean, ci95_low, ci95_high, interval}], sorted by `by`. Groups whose values are all
    missing or non-finite are left out."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        value = row["value"]
        if value is not None and math.isfinite(value):
            groups[tuple(row[k] for k in by)].append(value)
    out = []
    for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        metric = dict(zip(by, key))["metric"]
        out.append(dict(zip(by, key)) | asdict(estimate(groups[key], binary=is_binary(metric))))
    return out


@dataclass(frozen=True)
class Paired:
    """Two methods' 0/1 verdicts on the same triplets: how many only the first got right, only the
    second, both, neither, and the exact two-sided sign test's p on the discordant ones (1.0 if none);
    the first's joint rate minus the second's, with its 95 % interval (all three None with no triplet)."""

    first_only: int
    second_only: int
    both: int
    neither: int
    p_value: float
    difference: float | None
    difference_low: float | None
    difference_high: float | None


def paired(first: dict[str, float], second: dict[str, float]) -> Paired:
    """Compare two methods' 0/1 verdicts keyed by triplet id, on the triplets both have a finite verdict for."""
    keys = [k for k in first if k in second and all(v is not None and math.isfinite(v)
                                                    for v in (first[k], second[k]))]
    counts = defaultdict(int)
    for k in keys:
        a, b = first[k], second[k]
        if {a, b} - {0.0, 1.0}:
            raise ValueError(f"paired comparison of 0/1 verdicts got {a!r} and {b!r} for {k!r}")
        counts[(a, b)] += 1
    first_only, second_only = counts[(1.0, 0.0)], counts[(0.0, 1.0)]
    both, neither = counts[(1.0, 1.0)], counts[(0.0, 0.0)]
    discordant = first_only + second_only
    p = float(_stats.binomtest(first_only, discordant, 0.5).pvalue) if discordant else 1.0
    return Paired(first_only, second_only, both, neither, p,
                  *paired_difference(both, first_only, second_only, neither))


def paired_difference(both: int, first_only: int, second_only: int, neither: int) -> tuple:
    """(difference, low, high): the first's rate minus the second's on paired 0/1 verdicts and Newcombe's
    square-and-add 95 % interval (method 10): Wilson intervals (l1, u1), (l2, u2) of the two rates p1, p2,
    and ψ, the correlation of the two verdicts (its numerator a·d − b·c lowered by n/2 when above it, 0 when
    it lies in [0, n/2], 0 when a margin is empty):
        low  = D − √((p1 − l1)² − 2ψ(p1 − l1)(u2 − p2) + (u2 − p2)²)
        high = D + √((p2 − l2)² − 2ψ(p2 − l2)(u1 − p1) + (u1 − p1)²)
    (None, None, None) with no triplet."""
    n = both + first_only + second_only + neither
    if n == 0:
        return None, None, None

    def wilson(k: int) -> tuple[float, float, float]:
        ci = _stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
        return k / n, float(ci.low), float(ci.high)

    (p1, l1, u1), (p2, l2, u2) = wilson(both + first_only), wilson(both + second_only)
    margins = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    cross = both * neither - first_only * second_only
    psi = 0.0
    if margins and cross > n / 2:
        psi = (cross - n / 2) / math.sqrt(margins)
    elif margins and cross < 0:
        psi = cross / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = d + math.sqrt((p2 - l2) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    return d, low, high


@dataclass(frozen=True)
class PairedScores:
    """Two methods' continuous scores on the same triplets: n, the mean of first − second with Student's t
    95 % interval (None below n = 2; all three None with no triplet), and the two-sided Wilcoxon
    signed-rank test's p on the differences (1.0 when every difference is zero or there is none)."""

    n: int
    difference: float | None
    difference_low: float | None
    difference_high: float | None
    p_value: float


def paired_scores(first: dict[str, float], second: dict[str, float]) -> PairedScores:
    """Compare two methods' continuous scores keyed by triplet id, on the triplets both have a finite score for."""
    differences = [first[k] - second[k] for k in first if k in second and all(
        v is not None and math.isfinite(v) for v in (first[k], second[k]))]
    if not differences:
        return PairedScores(0, None, None, None, 1.0)
    mean, low, high = _t_interval(differences)
    p = float(_stats.wilcoxon(differences).pvalue) if any(differences) else 1.0
    return PairedScores(len(differences), mean, low, high, p)


def difference_text(c: dict, digits: int = 3) -> str:
    """A `Paired` or `PairedScores` as a dict (`dataclasses.asdict`, as `analogy bench` reports it) → its
    difference and interval as tables print them: '+0.571 [+0.079, +0.711]' ('none' with no triplet)."""
    if c["difference"] is None:
        return "none"
    if c["difference_low"] is None:
        return f"{c['difference']:+.{digits}f}"
    return f"{c['difference']:+.{digits}f} [{c['difference_low']:+.{digits}f}, {c['difference_high']:+.{digits}f}]"
