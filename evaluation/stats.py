"""Confidence intervals: mean ± t(0.975, n−1) · sd / √n."""

from __future__ import annotations

import math

# Student's t, two-sided 95% (the 0.975 quantile), for 1…30 degrees of freedom.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)
Z975 = 1.959964


def t975(df: int) -> float:
    """0.975 quantile of Student's t; a Cornish–Fisher expansion past the table (error < 1e-5)."""
    if df < 1:
        raise ValueError("a t quantile needs at least 1 degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = Z975, float(df)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


def mean_ci95(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of the 95% CI); the half-width is None for fewer than 2 values."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    return mean, t975(n - 1) * sd / math.sqrt(n)
