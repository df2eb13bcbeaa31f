"""The statistics of a report: means with t confidence intervals over seeds, paired
comparisons on matched seeds, and a ranking that says where ranks are not distinguishable.

Pure functions of arrays and tables; nothing here reads files.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean over n values with its two-sided t confidence interval (NaN bounds for n < 2)."""
    mean: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def mean_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean and the t interval mean +- t_{(1+c)/2, n-1} * s / sqrt(n), s with n - 1."""
    values = np.asarray(values, np.float64)
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(values.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


@dataclasses.dataclass(frozen=True)
class Paired:
    """a - b on the seeds both have: the mean difference's interval and a paired t-test."""
    a: str
    b: str
    difference: Interval
    p_value: float  # NaN with fewer than 2 pairs, or when every difference is equal


def paired(a_name: str, a: pd.Series, b_name: str, b: pd.Series) -> Paired:
    """`a` and `b`: a metric indexed by seed; only seeds present in both are compared."""
    seeds = a.index.intersection(b.index)
    x, y = a.loc[seeds].to_numpy(np.float64), b.loc[seeds].to_numpy(np.float64)
    p = math.nan
    if len(seeds) >= 2 and np.any(x - y != (x - y)[0]):
        p = float(stats.ttest_rel(x, y).pvalue)
    return Paired(a_name, b_name, mean_interval(x - y), p)


def rank(per_option: dict[str, pd.Series]) -> list[tuple[str, float, list[str]]]:
    """Options by mean (best first), each with the better-ranked options it cannot be told
    apart from: their paired difference's interval contains zero (or cannot be computed)."""
    order = sorted(per_option, key=lambda k: -per_option[k].mean())
    ranking = []
    for i, name in enumerate(order):
        ties = [better for better in order[:i] if not paired(
            better, per_option[better], name, per_option[name]).difference.excludes_zero()]
        ranking.append((name, float(per_option[name].mean()), ties))
    return ranking
