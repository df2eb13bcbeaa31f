"""Decisions from paired seeds: better, worse, equivalent within a margin, or inconclusive with
the seeds it would take; and two summaries of a hyperparameter sweep (learning-rate
sensitivity, the tolerant range of a setting).

Pure functions of arrays and tables; nothing here reads files.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from statsmodels.stats import multitest, weightstats

from bn_study.analysis import stats

ALPHA = 0.05
POWER = 0.8
OUTCOMES = ('better', 'worse', 'equivalent', 'inconclusive')

# Past this many seeds a comparison is called unreachable rather than planned.
_MAX_SEEDS = 10_000


def _check_margin(margin: float) -> None:
    # An equivalence margin of zero (or less) is an empty interval: nothing could be shown
    # equivalent, and every "inconclusive" would mean "never".
    if not margin > 0:
        raise ValueError(f'the equivalence margin must be > 0 (in the metric\'s units), '
                         f'got {margin!r}')


def tost_paired(a: np.ndarray, b: np.ndarray, margin: float) -> float:
    """p-value of the paired TOST that mean(a - b) lies in (-margin, +margin)
    (statsmodels `ttost_paired`); NaN with < 2 pairs. With zero spread the t statistics are
    infinite, so the answer is certain: 0.0 if |a - b| < margin, else 1.0."""
    _check_margin(margin)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = a - b
    if len(d) < 2:
        return math.nan
    if np.all(d == d[0]):
        return 0.0 if abs(d[0]) < margin else 1.0
    return float(weightstats.ttost_paired(a, b, -margin, margin)[0])


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values in the input order; NaN entries (tests that could not be made)
    stay NaN and do not count towards the family's size."""
    p = np.asarray(p_values, np.float64)
    adjusted = np.full(len(p), math.nan)
    made = ~np.isnan(p)
    if made.any():
        adjusted[made] = multitest.multipletests(p[made], method='holm')[1]
    return [float(x) for x in adjusted]


def _first_n(ns: np.ndarray, needed: np.ndarray) -> int | None:
    ok = np.nonzero(ns >= needed)[0]
    return int(ns[ok[0]]) if len(ok) else None


def seeds_to_decide(mean: float, sd: float, margin: float, alpha: float,
                    power: float = POWER) -> tuple[int | None, str]:
    """Matched pairs a comparison would need, were the true mean difference and its spread the
    observed ones, to reach a decision with probability `power` at level `alpha`, and which:
    'better'/'worse' (two-sided paired t-test) or 'equivalent' (TOST within +-margin, only
    when |mean| < margin). The smaller n wins, ties go to 'equivalent';
    (None, 'inconclusive') when neither is reachable within 10 000 pairs, or sd is NaN.

    Smallest n >= 2 with, t quantiles on n - 1 degrees of freedom,
      difference:   n >= ((t_{1-alpha/2} + t_{power}) * sd / |mean|)^2
      equivalence:  n >= ((t_{1-alpha} + t_{1-(1-power)/2}) * sd / (margin - |mean|))^2
    Both are the usual approximations (Chow, Shao & Wang, "Sample Size Calculations in
    Clinical Research", one-sample / paired mean: test for equality and for equivalence).
    For equivalence they use t_{1-beta/2} when the true difference is 0 and t_{1-beta}
    otherwise; t_{1-beta/2} throughout matches them at 0, stays continuous in the mean, and
    errs towards more seeds (both one-sided tests must pass, and near 0 both can fail).
    With sd == 0 the answer is 2 (the fewest pairs a test can be made on)."""
    _check_margin(margin)
    if math.isnan(mean) or math.isnan(sd):
        return None, 'inconclusive'
    ns = np.arange(2, _MAX_SEEDS + 1)
    df = ns - 1
    t = scipy_stats.t
    difference_n = equivalence_n = None
    if mean != 0:
        k = t.ppf(1 - alpha / 2, df) + t.ppf(power, df)
        difference_n = _first_n(ns, (k * sd / abs(mean)) ** 2)
    if abs(mean) < margin:
        k = t.ppf(1 - alpha, df) + t.ppf(1 - (1 - power) / 2, df)
        equivalence_n = _first_n(ns, (k * sd / (margin - abs(mean))) ** 2)
    if equivalence_n is not None and (difference_n is None or equivalence_n <= difference_n):
        return equivalence_n, 'equivalent'
    if difference_n is not None:
        return difference_n, 'better' if mean > 0 else 'worse'
    return None, 'inconclusive'


@dataclasses.dataclass(frozen=True)
class Decision:
    """One comparison a - b on matched seeds, decided within its family."""
    a: str
    b: str
    difference: stats.Interval  # a - b on matched seeds, 95% t interval
    sd: float  # sample sd (n - 1) of the paired differences; NaN with < 2 pairs
    margin: float
    p_difference: float  # two-sided paired t-test; NaN with < 2 pairs or all differences 0
    p_difference_holm: float
    p_equivalence: float  # paired TOST within +-margin
    p_equivalence_holm: float
    outcome: str  # one of OUTCOMES
    seeds_needed: int | None  # inconclusive only: pairs to decide (None: unreachable)
    would_be: str  # inconclusive only: the outcome those pairs would reach; '' otherwise


def decide(comparisons: list[tuple[str, pd.Series, str, pd.Series]], margin: float,
           alpha: float = ALPHA, looks: int = 1) -> list[Decision]:
    """Each (a_name, a, b_name, b) holds a metric indexed by seed for two options, paired on the
    seeds both have. The family is the whole list: Holm over the difference tests and,
    separately, over the equivalence tests, so each family of claims holds at level alpha.
    With `looks` > 1 (seeds were added after looking at interim results) every test is made
    at alpha / looks: Bonferroni over the looks bounds the error of any stopping rule.

    Outcome: 'better'/'worse' (sign of the mean) if the Holm difference p < alpha', else
    'equivalent' if the Holm equivalence p < alpha', else 'inconclusive' with the pairs
    `seeds_to_decide` gives at alpha' / family size (Bonferroni: Holm's strictest step)."""
    _check_margin(margin)
    if not 0 < alpha < 1:
        raise ValueError(f'alpha must be in (0, 1), got {alpha!r}')
    if int(looks) != looks or looks < 1:
        raise ValueError(f'looks must be a whole number >= 1, got {looks!r}')
    level = alpha / looks
    rows = []
    for a_name, a, b_name, b in comparisons:
        comparison = stats.paired(a_name, a, b_name, b)
        seeds = a.index.intersection(b.index)
        x, y = a.loc[seeds].to_numpy(np.float64), b.loc[seeds].to_numpy(np.float64)
        d = x - y
        sd = float(d.std(ddof=1)) if len(d) >= 2 else math.nan
        p_difference = comparison.p_value
        # Every difference equal: the t statistic is +-inf, not undefined. A common nonzero
        # difference is as certain as evidence gets (p = 0); a common zero difference gives
        # no evidence of a difference at all, so it stays NaN and leaves the Holm family
        # (its equivalence test, p = 0, still decides it).
        if len(d) >= 2 and sd == 0 and d[0] != 0:
            p_difference = 0.0
        rows.append((comparison, sd, p_difference, tost_paired(x, y, margin)))
    difference_holm = holm([row[2] for row in rows])
    equivalence_holm = holm([row[3] for row in rows])
    decisions = []
    for (comparison, sd, p_d, p_e), p_dh, p_eh in zip(rows, difference_holm, equivalence_holm):
        mean = comparison.difference.mean
        seeds_needed, would_be = None, ''
        if p_dh < level:
            outcome = 'better' if mean > 0 else 'worse'
        elif p_eh < level:
            outcome = 'equivalent'
        else:
            outcome = 'inconclusive'
            seeds_needed, would_be = seeds_to_decide(mean, sd, margin, level / len(rows))
            if seeds_needed is None:
                would_be = ''
        decisions.append(Decision(comparison.a, comparison.b, comparison.difference, sd,
                                  margin, p_d, p_dh, p_e, p_eh, outcome, seeds_needed,
                                  would_be))
    return decisions


def lr_sensitivity(final_losses: dict[float, float], initial_loss: float) -> float:
    """Learning-rate sensitivity of Wortsman et al. 2023 ("Small-scale proxies for
    large-scale Transformer training instabilities", arXiv 2309.14322, section 2.2):
    E_{eta in [a, b]} [min(l(A(eta)), l_0) - l*], with l(A(eta)) the final validation loss
    trained at rate eta, l_0 the loss at initialization and l* = min_eta l(A(eta)); the paper
    takes the expectation over the grid it swept (3e-4 ... 3e-1, half-decade steps).

    `final_losses` maps each swept rate to its final loss. A NaN or infinite loss is a
    diverged run and counts as l_0, which is what the clip to l_0 is for: a divergence costs
    the whole distance from untrained, no more. l* is the best finite loss; NaN if none."""
    losses = np.asarray(list(final_losses.values()), np.float64)
    finite = np.isfinite(losses)
    if not finite.any():
        return math.nan
    best = losses[finite].min()
    clipped = np.where(finite, np.minimum(losses, initial_loss), initial_loss)
    return float(np.mean(clipped - best))


def tolerant_range(accuracy_by_setting: dict[float, float],
                   tolerance: float) -> tuple[float, float] | None:
    """The widest contiguous run of grid values (sorted) that contains a best setting and whose
    accuracies are all within `tolerance` of the best; NaN (diverged) breaks a run. Returns
    (low, high) grid values, or None if every accuracy is NaN."""
    if not tolerance >= 0:
        raise ValueError(f'tolerance must be >= 0, got {tolerance!r}')
    settings = sorted(accuracy_by_setting)
    accuracy = np.asarray([accuracy_by_setting[s] for s in settings], np.float64)
    if np.all(np.isnan(accuracy)):
        return None
    best = np.nanmax(accuracy)
    # NaN compares False, so a diverged setting is never within tolerance.
    within = best - accuracy <= tolerance
    widest = None
    start = None
    for i in range(len(settings) + 1):
        if i < len(settings) and within[i]:
            start = i if start is None else start
            continue
        if start is not None:
            run = slice(start, i)
            if np.any(accuracy[run] == best) and (
                    widest is None or i - start > widest[1] - widest[0]):
                widest = (start, i)
            start = None
    return settings[widest[0]], settings[widest[1] - 1]
