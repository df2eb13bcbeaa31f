"""A tuned study's effects table and the Answer read from it.

A study declares cells (report_spec.Effect): each a pair of options its Tuning decides,
placed at a row and a column; for an ablation, a layer (row) whose norm one option has and
the other lacks, in each place it was removed from or added to (column). The table shows
each cell's paired difference with its interval and decision; the Answer reads each row out
in the declared order, then groups the rows by verdict: carries the effect (better with it
somewhere, worse nowhere), shown not to matter (equivalent everywhere), worse with it,
mixed, undecided.
"""

from bn_study.analysis import answer, markdown
from bn_study.analysis.report_spec import Effect


def _decision(family: answer.Family, where: str, effect: Effect):
    try:
        return family.get(where, effect.a, effect.b)
    except KeyError:  # an option diverged at every tuned setting, so was not compared
        return None


def _outcome(d, margin: float) -> str:
    if d is None:
        return 'not compared'
    if d.outcome == 'better':
        return 'better with'
    if d.outcome == 'worse':
        return 'worse with'
    if d.outcome == 'equivalent':
        return f'equivalent within ±{answer.points(margin)}'
    return 'inconclusive' + (f', about {d.seeds_needed} seeds' if d.seeds_needed else '')


def _cell(d, margin: float) -> str:
    if d is None:
        return 'not compared'
    mean, span = markdown.points(d.difference)
    return f'{mean} {span}: {_outcome(d, margin)}'


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def table(effects: tuple[Effect, ...], family: answer.Family, where: str) -> str:
    """Rows by columns; each cell 'a - b in points [95% CI]: decision'."""
    rows, columns = _ordered(e.row for e in effects), _ordered(e.column for e in effects)
    cells = {(e.row, e.column): _cell(_decision(family, where, e), family.margin)
             for e in effects}
    return markdown.table(('', *columns), [[row, *(cells.get((row, c), '') for c in columns)]
                                           for row in rows])


def answer_lines(effects: tuple[Effect, ...], family: answer.Family, where: str) -> list[str]:
    """Per row, what its cells decided (with their intervals); then the rows grouped by
    verdict."""
    lines, verdicts = [], {}
    for row in _ordered(e.row for e in effects):
        cells = [(e, _decision(family, where, e)) for e in effects if e.row == row]
        by_outcome = {}
        for e, d in cells:
            by_outcome.setdefault(d.outcome if d else 'not compared', []).append((e, d))
        parts = []
        for outcome, words in (('better', 'better with it'), ('worse', 'worse with it'),
                               ('equivalent', 'equivalent within '
                                f'±{answer.points(family.margin)} points'),
                               ('inconclusive', 'undecided'), ('not compared', 'not compared')):
            found = by_outcome.get(outcome, [])
            if found:
                parts.append(f'{words} in {len(found)} of {len(cells)} ('
                             + '; '.join(f'{e.column}: {_cell(d, family.margin)}'
                                         for e, d in found) + ')')
        lines.append(f'- **{row}**: ' + '; '.join(parts) + '.')
        helps, hurts = 'better' in by_outcome, 'worse' in by_outcome
        verdicts[row] = ('mixed' if helps and hurts else 'carries' if helps else
                         'hurts' if hurts else
                         'none' if set(by_outcome) == {'equivalent'} else 'undecided')
    named = lambda kind: ', '.join(r for r, v in verdicts.items() if v == kind) or 'none'
    lines.append(f'- Carries the effect (better with it somewhere, worse nowhere): '
                 f'{named("carries")}. Shown not to matter (equivalent within '
                 f'±{answer.points(family.margin)} points everywhere): {named("none")}. '
                 f'Worse with it: {named("hurts")}. Mixed: {named("mixed")}. '
                 f'Undecided: {named("undecided")}.')
    return lines
