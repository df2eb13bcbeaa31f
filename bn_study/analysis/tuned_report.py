"""The report of a tuned comparison (studies/tuning.py): the Answer, each option's tuning
curve on validation with its chosen setting and learning-rate sensitivity, then the options
compared on test at their own settings, every pair decided in one family."""

import math
import os

import pandas as pd

from bn_study import records
from bn_study.analysis import answer, decide, effects, figures, markdown, results, stats
from bn_study.studies import tuning as tuning_lib

WHERE = 'options at their tuned settings'


def _option_column(runs: pd.DataFrame, tuning: tuning_lib.Tuning) -> pd.Series:
    """Each run's option: the one whose overrides its config matches."""
    def option_of(row):
        for name, overrides in tuning.options.items():
            if all(k in row and row[k] == v for k, v in overrides.items()):
                return name
        return None
    return runs.apply(option_of, axis=1)


def stages(runs: pd.DataFrame, tuning: tuning_lib.Tuning) -> dict[str, pd.DataFrame]:
    """The runs of each stage, told apart by their seeds (the two sets are disjoint)."""
    return {'tuning': runs[runs['seed'].isin(tuning.tuning_seeds)],
            'comparison': runs[runs['seed'].isin(tuning.comparison_seeds)]}


def claim_runs(claim, runs: pd.DataFrame, tuning: tuning_lib.Tuning):
    """The runs a published claim is checked on, and the keys held fixed there. A claim
    naming a tuned key (e.g. BN beats none at lr 0.8) is checked on the tuning runs, where
    every option ran at every value; any other on the comparison runs, each option at its
    own tuned setting, where the tuned keys follow from the options and are never held
    (options at different settings still pair by seed)."""
    named = {*claim.better, *claim.worse, *claim.where}
    if set(tuning.grid) & named:
        chosen = stages(runs, tuning)['tuning']
        return chosen, results.configuration_keys(chosen)
    chosen = stages(runs, tuning)['comparison']
    return chosen, [k for k in results.configuration_keys(chosen) if k not in tuning.grid]


def _single_key(tuning: tuning_lib.Tuning) -> str | None:
    return next(iter(tuning.grid)) if len(tuning.grid) == 1 else None


def _tuning_facts(tuning: tuning_lib.Tuning, table: pd.DataFrame) -> dict[str, dict]:
    """Per option: validation accuracy at the choice, learning-rate sensitivity (Wortsman et
    al. 2023, on the mean final validation loss), the grid range within the tolerance of
    the best, and how many grid points failed."""
    key = _single_key(tuning)
    facts = {}
    for name in tuning.options:
        rows = table[table['option'] == name]
        losses = {i: (math.nan if failed else loss)
                  for i, loss, failed in zip(rows['index'], rows['val_loss'], rows['failed'])}
        initial = rows['initial_val_loss'].mean()
        span = None
        if key is not None:
            span = decide.tolerant_range(
                {point[key]: acc for point, acc in zip(rows['point'], rows['val_accuracy'])},
                tuning.tolerance)
        facts[name] = {
            'best_val': rows['val_accuracy'].max(),
            'sensitivity': decide.lr_sensitivity(losses, initial),
            'range': span, 'failed': int(rows['failed'].sum()), 'points': len(rows)}
    return facts


def _span_text(span) -> str:
    if span is None:
        return '-'
    low, high = span
    return f'{low:g} to {high:g}' + (f' ({high / low:.3g}x)' if low > 0 else '')


def write(doc: markdown.Document, sweep_dir: str, out_dir: str, runs: pd.DataFrame,
          state: dict, margin: float, effect_cells: tuple = ()) -> answer.Family:
    """The tuned study's sections into `doc`; returns the family of decisions. With
    `effect_cells` (report_spec.Effect) the Answer reads out their table (analysis/effects.py)
    instead of recommending an option."""
    tuning = tuning_lib.Tuning.from_json(state['tuning'])
    chosen = state['chosen']
    looks = tuning.seed_looks()
    seeds = looks[state['looks_taken'] - 1]
    table = tuning_lib.tuning_table(tuning, sweep_dir)
    per_option = tuning_lib.comparison_frame(tuning, chosen, sweep_dir, seeds) or {}
    family = answer.Family([answer.Comparison(WHERE, a, sa, b, sb)
                            for a, sa, b, sb in tuning_lib.compared_pairs(tuning, per_option)],
                           margin, looks=len(looks))
    runs = runs.assign(option=_option_column(runs, tuning))
    stage2 = runs[runs['seed'].isin(tuning.comparison_seeds[:seeds])]
    # Stage 1's records may be gone (the choice stays in tuning.json): then no facts.
    facts = _tuning_facts(tuning, table) if table is not None else {}
    missing = {'best_val': float('nan'), 'sensitivity': float('nan'), 'range': None,
               'failed': '-', 'points': '-'}
    settings = {o: tuning_lib.point_name(p) for o, p in chosen.items() if p is not None}

    doc.heading(2, 'Answer', outline=True)
    if not per_option:
        doc.paragraph('Stage 2 (the comparison at the tuned settings) has not finished; '
                      'rerun the sweep to complete it.')
    else:
        done = stage2[stage2['summary.status'] == records.COMPLETE]
        diverged = {o: _count(stage2, o, records.DIVERGED) for o in per_option}
        if effect_cells:
            lines = effects.answer_lines(effect_cells, family, WHERE) + [
                '  - diverged runs: ' + (', '.join(f'{o} {n}' for o, n in diverged.items()
                                                   if n) or 'none') + '.']
        else:
            lines = answer.setting_lines(
                WHERE, {o: v.mean() for o, v in per_option.items()},
                {o: stats.mean_interval(v) for o, v in per_option.items()}, family, diverged,
                answer.cost_ratios(sweep_dir, {o: list(done[done['option'] == o]['run'])
                                               for o in per_option}), settings)
        unchosen = [o for o, p in chosen.items() if p is None]
        if unchosen:
            lines.append(f'  - diverged at every tuned setting, so not compared: '
                         f'{", ".join(unchosen)}.')
        doc.paragraph(
            f'Each option trained at its own setting of {", ".join(tuning.grid)}, chosen on '
            f'validation over {len(tuning.tuning_seeds)} tuning seed(s); then compared on '
            f'test over {seeds} other seeds ({state["looks_taken"]} of {len(looks)} declared '
            f'looks at {", ".join(map(str, looks))} seeds taken).', '\n'.join(lines))
        doc.outline.extend(f'  {line.strip()}' for line in lines)
        if effect_cells:
            doc.paragraph('Each cell: the option with what its row names minus the same '
                          'option without it, in points of test accuracy, paired by seed, '
                          'with its 95% interval and decision.',
                          effects.table(effect_cells, family, WHERE))
        doc.paragraph(markdown.table(
            ('option', 'tuned setting', 'test accuracy (95% CI)', 'seeds',
             'validation accuracy at the choice', 'LR sensitivity (validation loss)',
             f'setting range within {tuning.tolerance * 100:g} point(s) of the best',
             'failed grid points'),
            [[o, settings.get(o, '-'), markdown.interval(stats.mean_interval(per_option[o])),
              len(per_option[o]), markdown.number(fact['best_val']),
              markdown.number(fact['sensitivity']), _span_text(fact['range']),
              f'{fact["failed"]} of {fact["points"]}']
             for o, fact in ((o, facts.get(o, missing)) for o in per_option)]))

    doc.heading(2, 'Stage 1: tuning on validation', outline=True)
    if table is None:
        doc.paragraph('Stage 1 has unfinished runs; nothing is chosen yet.')
        return family
    doc.paragraph(
        f'Mean final validation accuracy and loss over the tuning seeds '
        f'{", ".join(map(str, tuning.tuning_seeds))} at every grid point; a point where a '
        'seed diverged failed. Each option takes its best point (the first on a tie). '
        'LR sensitivity is Wortsman et al. (2023)\'s: the mean over the grid of '
        'min(final validation loss, loss at initialization) minus the best final '
        'validation loss, a diverged point counting as the loss at initialization.',
        markdown.table(('option', 'setting', 'validation accuracy', 'validation loss',
                        'failed', 'chosen'),
                       [[r.option, tuning_lib.point_name(r.point),
                         markdown.number(r.val_accuracy), markdown.number(r.val_loss),
                         'yes' if r.failed else '', 'yes' if chosen[r.option] == r.point
                         else ''] for r in table.itertuples()]))
    key = _single_key(tuning)
    if key is not None:
        figure = figures.file_name('tuning', os.path.basename(os.path.normpath(sweep_dir)))
        figures.tuning_curves(table, key, os.path.join(out_dir, figure),
                              'validation accuracy at each tuned value (x at 0: failed)')
        doc.paragraph(f'![tuning curves]({figure})')

    doc.heading(2, 'Stage 2: the options compared on test', outline=True)
    if not per_option:
        doc.paragraph('Stage 2 has unfinished runs.')
        return family
    decisions = family.within(WHERE)
    doc.paragraph(markdown.table(answer.DECISION_COLUMNS,
                                 map(answer.decision_cells, decisions)))
    figure = figures.file_name('curves', os.path.basename(os.path.normpath(sweep_dir)))
    figures.curves(stage2, 'option', sweep_dir, os.path.join(out_dir, figure),
                   'comparison runs at the tuned settings')
    doc.paragraph(f'![learning curves]({figure})')
    return family


def _count(runs: pd.DataFrame, option: str, status: str) -> int:
    return int(((runs['option'] == option) & (runs['summary.status'] == status)).sum())
