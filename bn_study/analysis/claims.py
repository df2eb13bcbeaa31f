"""Published claims checked against measured runs: the verdict on each claim comes from the
measured paired interval, never from a hand-written sentence (report_spec declares them)."""

import dataclasses
import math
import re

import pandas as pd

from bn_study import records
from bn_study.analysis import stats
from bn_study.analysis.report_spec import EVAL, NEVER_POOLED, Claim


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A claim checked on one group of runs (the swept keys it does not name held fixed)."""
    claim: Claim
    held: dict
    difference: stats.Interval  # better - worse, in accuracy
    p_value: float
    verdict: str


def _metric(side: dict) -> str:
    kind = side.get(EVAL)
    return f'summary.final_test_accuracy_{kind}' if kind else 'summary.final_test_accuracy'


def _matching(runs: pd.DataFrame, values: dict) -> pd.DataFrame:
    """The runs whose config has every value given (eval aside)."""
    mask = pd.Series(True, index=runs.index)
    for key, value in values.items():
        if key == EVAL:
            continue
        if key not in runs:
            return runs.iloc[0:0]
        mask &= runs[key].map(lambda v, want=value: v == want)
    return runs[mask]


def _verdict(claim: Claim, difference: stats.Interval, better: tuple, worse: tuple) -> str:
    """From the paired interval; `better` and `worse` are each side's (complete seeds,
    diverged runs, runs). A side that diverged on every seed loses to one that trained."""
    (better_done, better_diverged, better_runs) = better
    (worse_done, worse_diverged, worse_runs) = worse
    if difference.n == 0:
        if better_done and worse_runs and worse_diverged == worse_runs:
            return f'agrees: the worse side diverged on all {worse_runs} seeds'
        if worse_done and better_runs and better_diverged == better_runs:
            return f'disagrees: the better side diverged on all {better_runs} seeds'
        return 'not measured'
    if difference.n < 2:
        verdict = 'too few seeds to judge'
    elif difference.high < 0:
        verdict = 'disagrees'
    elif difference.low > 0:
        verdict = 'agrees'
    elif claim.kind == 'no_worse':  # not refuted; an interval around zero shows no tie either
        verdict = 'consistent: not distinguishable at this scale'
    else:
        verdict = 'not distinguishable at this scale'
    # Diverged seeds have no accuracy to pair; say so rather than drop them silently.
    dropped = [f'the {name} side diverged on {diverged} of {runs} seeds'
               for name, diverged, runs in (('better', better_diverged, better_runs),
                                            ('worse', worse_diverged, worse_runs)) if diverged]
    return verdict + ''.join(f'; {note}' for note in dropped)


def _follows_from_the_sides(key: str, sides: list[pd.DataFrame]) -> bool:
    """True if `key` takes one value on each side and different values on the two: it is
    set by the named keys (e.g. a learning rate scaled with the normalization batch), and
    holding it fixed would leave the two sides in different groups."""
    values = [side[key].unique() for side in sides]
    return all(len(v) == 1 for v in values) and values[0][0] != values[1][0]


def _held_keys(claim: Claim, runs: pd.DataFrame, swept: list[str]) -> list[str]:
    """The swept keys to hold fixed: those the claim does not name, except keys that follow
    from the named ones; datasets and models are always held (never pooled)."""
    named = set(claim.better) | set(claim.worse) | set(claim.where)
    scope = _matching(runs, claim.where)
    sides = [_matching(scope, side) for side in (claim.better, claim.worse)]
    return [k for k in swept if k not in named and k in runs
            and (k in NEVER_POOLED or not _follows_from_the_sides(k, sides))]


def check(claim: Claim, runs: pd.DataFrame, held_keys: list[str]) -> list[Outcome]:
    """The claim on every combination of the swept keys it does not name (but see
    _held_keys), pairing the two sides' runs by seed."""
    held_keys = _held_keys(claim, runs, held_keys)
    scope = _matching(runs, claim.where)
    groups = scope.groupby(held_keys, dropna=False) if held_keys else [((), scope)]
    outcomes = []
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        sides = []
        for side in (claim.better, claim.worse):
            chosen = _matching(group, side)
            done = chosen[chosen['summary.status'] == records.COMPLETE]
            metric = _metric(side)
            series = (done.set_index('seed')[metric].dropna() if metric in done
                      else pd.Series(dtype=float))
            diverged = int((chosen['summary.status'] == records.DIVERGED).sum())
            sides.append((series, diverged, len(chosen)))
        (better, better_diverged, better_runs), (worse, worse_diverged, worse_runs) = sides
        if better.index.has_duplicates or worse.index.has_duplicates:
            outcomes.append(Outcome(claim, dict(zip(held_keys, values)),
                                    stats.mean_interval([]), math.nan,
                                    'ambiguous: a side matches several runs per seed; name '
                                    'more keys in the claim'))
            continue
        paired = stats.paired('better', better, 'worse', worse)
        outcomes.append(Outcome(
            claim, dict(zip(held_keys, values)), paired.difference, paired.p_value,
            _verdict(claim, paired.difference, (len(better), better_diverged, better_runs),
                     (len(worse), worse_diverged, worse_runs))))
    return outcomes


def tally(outcomes: list[Outcome]) -> list[tuple[str, int]]:
    """How many outcomes reached each verdict, most frequent first; a verdict is counted by
    its first words (after ':' or ';' come details)."""
    return list(pd.Series([re.split('[:;]', o.verdict)[0] for o in outcomes])
                .value_counts().items())


COLUMNS = ('source', 'claim', 'published', 'held fixed',
           'measured better - worse (points, 95% CI)', 'seeds', 'p', 'verdict')


def outcome_cells(outcome: Outcome) -> list[str]:
    """An outcome in words, one per COLUMNS: source, claim, published, held settings,
    measured difference, seeds, p-value, verdict."""
    d = outcome.difference
    held = ', '.join(f'{k.split(".")[-1]}={v}' for k, v in outcome.held.items()) or '-'
    measured = '-' if d.n == 0 else (
        f'{d.mean * 100:+.2f}' if d.n < 2 else
        f'{d.mean * 100:+.2f} [{d.low * 100:.2f}, {d.high * 100:.2f}]')
    p = '-' if math.isnan(outcome.p_value) else f'{outcome.p_value:.3f}'
    return [outcome.claim.source, outcome.claim.describe(), outcome.claim.published, held,
            measured, str(d.n), p, outcome.verdict]
