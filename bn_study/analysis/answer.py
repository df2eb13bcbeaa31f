"""A report's decisions and the Answer that opens it.

Every paired comparison a report makes (compared options within a setting, other swept
keys' effects) is decided in one family by decide.decide: Holm across all of them, each
called better, worse, equivalent within ±δ, or inconclusive with the seeds it would take.
The Answer is written from those decisions alone: per setting, the options no other option
beats (best mean first), what each is equivalent to or better than, what stayed unresolved,
divergence, and the training-step cost measured in the runs. Never hand-written.
"""

import dataclasses
import math
import os

import numpy as np
import pandas as pd

from bn_study import records
from bn_study.analysis import decide, markdown


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Two options' metric by seed, in one place of the report (`where`)."""
    where: str
    a: str
    a_values: pd.Series
    b: str
    b_values: pd.Series


class Family:
    """Every comparison of one report, decided together; look a decision up by
    (where, a, b)."""

    def __init__(self, comparisons: list[Comparison], margin: float, looks: int = 1):
        self.margin, self.looks = margin, looks
        decided = decide.decide([(c.a, c.a_values, c.b, c.b_values) for c in comparisons],
                                margin, looks=looks) if comparisons else []
        self._by_key = {(c.where, c.a, c.b): d for c, d in zip(comparisons, decided)}

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, where: str, a: str, b: str) -> decide.Decision:
        return self._by_key[(where, a, b)]

    def within(self, where: str) -> list[decide.Decision]:
        return [d for (w, _, _), d in self._by_key.items() if w == where]


def points(value: float) -> str:
    return markdown.number(value * 100, 2)


def phrase(d: decide.Decision) -> str:
    """A decision in words, from a's side."""
    if d.outcome == 'better':
        return f'{d.a} better'
    if d.outcome == 'worse':
        return f'{d.b} better'
    if d.outcome == 'equivalent':
        return f'equivalent within ±{points(d.margin)} points'
    if d.difference.n < 2:
        return f'inconclusive; {d.difference.n} matched seed(s), too few to test'
    if d.seeds_needed is None:
        return 'inconclusive; not decidable at this spread within 10,000 seeds'
    would = {'better': f'{d.a} better', 'worse': f'{d.b} better',
             'equivalent': 'equivalence'}[d.would_be]
    return f'inconclusive; about {d.seeds_needed} seeds would show {would}'


DECISION_COLUMNS = ('a', 'b', 'a - b (points)', '95% CI', 'seeds', 'p', 'p (Holm)',
                    'TOST p', 'TOST p (Holm)', 'decision')


def decision_cells(d: decide.Decision) -> list:
    return [d.a, d.b, *markdown.points(d.difference), d.difference.n,
            markdown.number(d.p_difference, 3), markdown.number(d.p_difference_holm, 3),
            markdown.number(d.p_equivalence, 3), markdown.number(d.p_equivalence_holm, 3),
            phrase(d)]


def method(family: Family) -> str:
    """How the decisions were made, in one paragraph."""
    alpha = decide.ALPHA / family.looks
    looks = (f' Seeds are added in up to {family.looks} looks declared in advance, so every test '
             f'is made at {decide.ALPHA}/{family.looks} = {alpha:.4f} (Bonferroni over the '
             'looks), which bounds the chance of any false decision over all looks by '
             f'{decide.ALPHA} whatever was seen at each.' if family.looks > 1 else '')
    return (f'This report decides {len(family)} paired comparisons (runs paired by seed) as one '
            f'family at level {decide.ALPHA}: a paired t-test for a difference and paired '
            f'two one-sided tests (TOST) for equivalence within ±{points(family.margin)} '
            'points, each kind Holm-adjusted across the family (raw and adjusted p shown). '
            '"Better" needs the adjusted difference test; "equivalent" the adjusted TOST; '
            'anything else is "inconclusive", with the seeds that the observed paired spread '
            f'says would decide it (power {decide.POWER}, at level {decide.ALPHA} divided by '
            f'the family size).{looks}')


def not_beaten(options: list[str], decisions: list[decide.Decision]) -> list[str]:
    """The options no other option is decided better than, in the given order."""
    beaten = {d.b if d.outcome == 'better' else d.a for d in decisions
              if d.outcome in ('better', 'worse')}
    return [o for o in options if o not in beaten]


def relation(option: str, other: str, decisions: list[decide.Decision]):
    """The decision between two options, from `option`'s side: (outcome, decision)."""
    for d in decisions:
        if (d.a, d.b) == (option, other):
            return d.outcome, d
        if (d.a, d.b) == (other, option):
            flipped = {'better': 'worse', 'worse': 'better'}.get(d.outcome, d.outcome)
            return flipped, d
    return None, None


def step_seconds(sweep_dir: str, run: str) -> float:
    """A run's wall time per training step, evaluation included, over its epochs after the
    first (the first holds compilation); NaN without two epochs."""
    rows = records.read_metrics(os.path.join(sweep_dir, run))
    if len(rows) < 2 or 'epoch_time_s' not in rows[-1]:
        return math.nan
    return sum(r['epoch_time_s'] for r in rows[1:]) / (rows[-1]['step'] - rows[0]['step'])


def cost_ratios(sweep_dir: str, runs_by_option: dict[str, list[str]]) -> dict[str, float]:
    """Per option: the median time per step over its runs, relative to the fastest option."""
    medians = {}
    for option, runs in runs_by_option.items():
        seconds = [t for t in (step_seconds(sweep_dir, r) for r in runs) if math.isfinite(t)]
        medians[option] = float(np.median(seconds)) if seconds else math.nan
    finite = [m for m in medians.values() if math.isfinite(m)]
    fastest = min(finite) if finite else math.nan
    return {o: m / fastest for o, m in medians.items()}


def setting_lines(where: str, means: dict[str, float], intervals: dict, family: Family,
                  diverged: dict[str, int], costs: dict[str, float],
                  settings: dict[str, str] | None = None) -> list[str]:
    """The Answer for one setting, as markdown lines: the recommended option and the
    evidence behind it, facet by facet, then what stayed unresolved."""
    order = sorted(means, key=lambda o: -means[o])
    decisions = family.within(where)
    if len(order) < 2:
        return [f'- **{where}**: fewer than two options have complete runs; nothing to '
                'compare.']
    top = not_beaten(order, decisions)
    best = top[0] if top else order[0]
    tuned = f' at its tuned setting ({settings[best]})' if settings else ''
    lines = [f'- **{where}**: recommended **{best}**{tuned}: test accuracy '
             f'{markdown.interval(intervals[best])} over {intervals[best].n} seeds.']
    by_outcome = {}
    for other in order:
        if other != best:
            outcome, _ = relation(best, other, decisions)
            by_outcome.setdefault(outcome, []).append(other)
    if by_outcome.get('better'):
        lines.append(f'  - better than: {", ".join(by_outcome["better"])}.')
    if by_outcome.get('equivalent'):
        lines.append(f'  - equivalent within ±{points(family.margin)} points: '
                     f'{", ".join(by_outcome["equivalent"])}.')
    others = [o for o in top if o != best]
    if others:
        lines.append(f'  - also beaten by no option: {", ".join(others)}.')
    unresolved = [d for d in decisions if d.outcome == 'inconclusive']
    if unresolved:
        needed = [d.seeds_needed for d in unresolved if d.seeds_needed is not None]
        lines.append(f'  - unresolved: {len(unresolved)} of {len(decisions)} comparisons ('
                     + '; '.join(f'{d.a} vs {d.b}: {phrase(d)}' for d in unresolved) + ')'
                     + (f'; deciding all of them would take about {max(needed)} seeds per '
                        'option.' if needed else '.'))
    else:
        lines.append(f'  - all comparisons here ({len(decisions)}) are decided.')
    if any(diverged.values()):
        lines.append('  - diverged runs: ' + ', '.join(
            f'{o} {n}' for o, n in diverged.items() if n) + '.')
    else:
        lines.append('  - no run diverged.')
    if costs and any(math.isfinite(c) for c in costs.values()):
        lines.append('  - time per training step, relative to the fastest option (median '
                     'over runs; wall clock, so it varies a little between reruns): ' +
                     ', '.join(f'{o} {c:.1f}x' for o, c in costs.items()
                               if math.isfinite(c)) + '.')
    return lines
