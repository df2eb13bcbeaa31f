"""A sweep dir to REPORT.md and PNG figures: the Answer first, then per-configuration means
with 95% intervals, every pair of the compared key's values (the placements, unless the
study says otherwise) decided on matched seeds, the effect of every other swept setting,
the published claims checked, evaluation kinds side by side, curves, activation statistics.

This module lays the report out: answer.py decides every comparison as one family and
writes the Answer's lines, findings.py computes tables and sentences, claims.py checks the
published claims, figures.py draws, markdown.py writes text; a tuned study's sections are
tuned_report.py's.
"""

import dataclasses
import os

import pandas as pd

from bn_study import errors, records
from bn_study.analysis import (
    answer,
    claims,
    figures,
    findings,
    markdown,
    report_spec,
    results,
    stats,
    tuned_report,
)
from bn_study.studies import sweep_index, tuning

# Plotted against when swept (and not the compared key itself).
AXES = ('optimizer.learning_rate', 'batch_size', 'norm.ghost_batch_size')
REPORT_FILE = 'REPORT.md'


@dataclasses.dataclass(frozen=True)
class Report:
    """A written report: its path, and its section titles and verdicts (one per line, no
    newline) to print at the end of a sweep."""
    path: str
    verdict_lines: list[str]


@dataclasses.dataclass(frozen=True)
class _Place:
    """Where a report reads its runs and writes its figures, and the key it compares."""
    sweep_dir: str
    out_dir: str
    compare: str


def _where(title: str, setting: dict) -> str:
    return f'{title}; {findings.setting_name(setting)}'


def _effect_where(title: str, row: dict) -> str:
    held = ', '.join(f'{k.split(".")[-1]}={v}' for k, v in row['held'].items())
    return f'{title}; effect of {row["key"]}; {held}'


def comparisons(runs: pd.DataFrame, compare: str) -> list[answer.Comparison]:
    """Every paired comparison the report makes, in the order it lays them out: each
    setting's options pairwise, then every other swept key's effects."""
    found = []
    for title, section in findings.sections(runs):
        if compare not in section:
            continue
        for setting, group in findings.by_setting(section, compare):
            per_option = findings.per_option(group, compare)
            found += [answer.Comparison(_where(title, setting), a, per_option[a], b,
                                        per_option[b])
                      for a, b in findings.pairs(per_option)]
        for row in findings.effects(section, compare):
            found.append(answer.Comparison(_effect_where(title, row), str(row['to']),
                                           row['to_values'], str(row['from']),
                                           row['from_values']))
    return found


def _options(doc: markdown.Document, place: _Place, title: str, setting: dict,
             group: pd.DataFrame, family: answer.Family) -> None:
    """The compared options of one setting: ranking, every pair decided, verdict, curves
    and percentiles."""
    name = findings.setting_name(setting)
    per_option = findings.per_option(group, place.compare)
    decisions = family.within(_where(title, setting))
    doc.heading(3, f'{place.compare} compared, {name}', outline=True)
    seeds = [len(v) for v in per_option.values()]
    if seeds and max(seeds) < 2:
        doc.paragraph('One seed per option: no intervals or tests; rerun with more seeds.')
    if len(per_option) >= 2:
        doc.paragraph('Mean final test accuracy, best first:')
        order = sorted(per_option, key=lambda o: -per_option[o].mean())
        doc.paragraph('\n'.join(f'{i}. {option}: {per_option[option].mean():.4f}'
                                 for i, option in enumerate(order, 1)))
        doc.paragraph(markdown.table(answer.DECISION_COLUMNS,
                                     map(answer.decision_cells, decisions)))
    doc.lead('Verdict', ' '.join(findings.verdict(per_option, decisions)))
    figure = figures.file_name('curves', title, name)
    figures.curves(group, place.compare, place.sweep_dir, os.path.join(place.out_dir, figure),
                   f'{title}; {name}')
    doc.paragraph(f'![learning curves]({figure})')
    drawn = figures.last_activation_percentiles(
        findings.diagnostics(group, place.sweep_dir), group, place.compare, place.out_dir,
        f'{title}; {name}')
    if drawn:
        layer, figure = drawn
        doc.paragraph(f'Percentiles of the input of {layer} over training (mean over seeds):',
                      f'![percentiles]({figure})')


def _effects(doc: markdown.Document, compare: str, title: str, section: pd.DataFrame,
             family: answer.Family) -> None:
    """Per other swept key: its values against its first, the rest held fixed."""
    found = findings.effects(section, compare)
    for key in dict.fromkeys(row['key'] for row in found):
        rows = [row for row in found if row['key'] == key]
        decided = [family.get(_effect_where(title, row), str(row['to']), str(row['from']))
                   for row in rows]
        doc.heading(3, f'Effect of {key}', outline=True)
        doc.paragraph(markdown.table(
            (f'{compare} and fixed settings', *answer.DECISION_COLUMNS),
            [[', '.join(f'{v}' for v in row['held'].values()), *answer.decision_cells(d)]
             for row, d in zip(rows, decided)]))
        doc.lead('Effect', ' '.join(findings.effect_sentence(row, d)
                                    for row, d in zip(rows, decided)))


def _claims(doc: markdown.Document, spec: report_spec.ReportSpec, runs: pd.DataFrame,
            runs_of=None) -> int:
    """Every published claim, checked per held setting; `runs_of(claim)` gives the runs a
    claim is checked on and the keys held fixed there (by default all runs, and every key
    that varies among them)."""
    if not spec.claims:
        return 0
    outcomes = []
    for claim in spec.claims:
        chosen, held = runs_of(claim) if runs_of else (runs, results.configuration_keys(runs))
        outcomes += claims.check(claim, chosen, held)
    doc.heading(2, 'Published results side by side', outline=True)
    doc.paragraph(
        'Each claim is checked on the runs here, at this study\'s scale, pairing the two sides '
        'by seed: "agrees" when the 95% interval of better - worse lies above zero, '
        '"disagrees" when it lies below, else "not distinguishable at this scale" (for "no '
        'worse" claims, "consistent": not refuted, not confirmed).',
        markdown.table(claims.COLUMNS, map(claims.outcome_cells, outcomes)))
    doc.lead('Published', ', '.join(f'{n} {v}' for v, n in claims.tally(outcomes)) +
             f' (of {len(outcomes)}).')
    return sum(o.difference.n >= 2 for o in outcomes)


def _section(doc: markdown.Document, place: _Place, title: str,
             section: pd.DataFrame, family: answer.Family) -> None:
    """One (dataset, model): its configurations, the compared options per setting, the
    other keys' effects, accuracy against swept axes, evaluation kinds and diagnostics."""
    keys = results.configuration_keys(section)
    doc.heading(2, title, outline=True)
    doc.paragraph(f'{len(section)} runs; {findings.count_status(section, records.COMPLETE)} '
                  f'complete, {findings.count_status(section, records.DIVERGED)} diverged.')
    doc.heading(3, 'Per configuration')
    doc.paragraph(markdown.frame(findings.configuration_table(section), keys))
    if place.compare not in section:
        doc.paragraph(f'No run here sets {place.compare}; nothing to compare.')
        return
    for setting, group in findings.by_setting(section, place.compare):
        _options(doc, place, title, setting, group, family)
    _effects(doc, place.compare, title, section, family)
    for axis in AXES:
        if axis != place.compare and axis in keys:
            figure = figures.file_name('against', title, axis)
            figures.against(section, place.compare, axis, os.path.join(place.out_dir, figure),
                            title)
            doc.heading(3, f'Final test accuracy against {axis}')
            doc.paragraph(f'![{axis}]({figure})')
    kinds = findings.eval_kinds(section)
    if kinds:
        doc.heading(3, 'Evaluation statistics side by side')
        doc.paragraph(
            'The same trained weights evaluated with each kind of BN statistics (ema: the '
            'running averages; precise: PreciseBN; batch: each test batch its own).',
            markdown.frame(findings.eval_kinds_table(section, place.sweep_dir, kinds), keys))
    norms = findings.norm_table(findings.diagnostics(section, place.sweep_dir), keys)
    if norms is not None:
        doc.heading(3, 'Activation statistics at the last diagnosed step (mean over runs)')
        doc.paragraph(markdown.frame(norms, keys))


def _answer(doc: markdown.Document, place: _Place, runs: pd.DataFrame,
            family: answer.Family) -> None:
    """The Answer for a fixed sweep: per section and setting, from the family's decisions."""
    lines = []
    for title, section in findings.sections(runs):
        if place.compare not in section:
            continue
        for setting, group in findings.by_setting(section, place.compare):
            per_option = findings.per_option(group, place.compare)
            done = group[group['summary.status'] == records.COMPLETE]
            options = {str(o): rows for o, rows in group.groupby(place.compare)}
            lines += answer.setting_lines(
                _where(title, setting), {o: v.mean() for o, v in per_option.items()},
                {o: stats.mean_interval(v) for o, v in per_option.items()}, family,
                {o: findings.count_status(rows, records.DIVERGED)
                 for o, rows in options.items()},
                answer.cost_ratios(place.sweep_dir, {
                    o: list(done[done[place.compare].astype(str) == o]['run'])
                    for o in options}))
    doc.heading(2, 'Answer', outline=True)
    doc.paragraph(f'Which {place.compare} to use, from the decided comparisons below (test '
                  'accuracy after the last epoch; no setting was tuned per option in this '
                  'study, so each comparison holds at the settings named):', '\n'.join(lines))
    doc.outline.extend(f'  {line.strip()}' for line in lines)


def machines(runs: pd.DataFrame) -> str:
    """The machines the runs ran on, from their summaries' environment."""
    columns = ['summary.environment.cpu_model', 'summary.environment.cpu_count',
               'summary.environment.device_kind']
    if columns[0] not in runs:
        return 'not recorded (runs made before the environment named the CPU)'
    found = runs[columns].dropna().drop_duplicates()
    return '; '.join(f'{model}, {int(count)} cores (JAX devices: {kind})'
                     for model, count, kind in found.itertuples(index=False)) or 'not recorded'


def write_report(sweep_dir: str, out_dir: str = '') -> Report:
    """Writes REPORT.md and its figures into out_dir (default: the sweep dir). The study's
    ReportSpec (compared key, margin, published claims) comes from the sweep dir's
    sweep.json, and a tuned study's declaration and choice from its tuning.json."""
    out_dir = out_dir or sweep_dir
    os.makedirs(out_dir, exist_ok=True)
    corrupt = []
    runs = results.load_runs(sweep_dir, corrupt)
    if runs.empty:
        raise errors.ConfigError(f'{sweep_dir} holds no run records (no <run>/config.json); '
                                 'run a sweep into it first')
    manifest = sweep_index.read_manifest(sweep_dir) or {}
    spec = report_spec.ReportSpec.from_json(manifest.get('report'))
    state = tuning.read_state(sweep_dir)
    body = markdown.Document()
    if corrupt:
        body.paragraph(f'Skipped {len(corrupt)} run(s) with unreadable records: '
                       f'{", ".join(corrupt)}.')
    if state is not None:
        family = tuned_report.write(body, sweep_dir, out_dir, runs, state, spec.margin,
                                    spec.effects)
        plan = tuning.Tuning.from_json(state['tuning'])
        if _claims(body, spec, runs, lambda claim: tuned_report.claim_runs(claim, runs, plan)):
            body.paragraph('The published claims above are checked each on its own 95% '
                           'interval, outside the family of decisions: a claim naming a '
                           'tuned value on the tuning runs (its seeds), any other on the '
                           'comparison runs at the tuned settings.')
    else:
        place = _Place(sweep_dir, out_dir, spec.compare)
        family = answer.Family(comparisons(runs, spec.compare), spec.margin)
        _answer(body, place, runs, family)
        published = _claims(body, spec, runs)
        if published:
            body.paragraph(f'The {published} published claims above are checked each on its '
                           'own 95% interval, outside the family of decisions below.')
        for title, section in findings.sections(runs):
            _section(body, place, title, section, family)
    doc = markdown.Document()
    doc.heading(1, f'Report: {os.path.normpath(sweep_dir)}')
    doc.paragraph(
        'Generated by `scripts/report.py` from the run records; every number and sentence '
        'below is computed, none is written by hand. Intervals are 95% t intervals over '
        'seeds; comparisons pair runs with the same seed. Every choice (a tuned setting, '
        'the epoch validation selects) is made on the validation split carved from the '
        'training split; the test split is only reported.',
        answer.method(family), f'Machine: {machines(runs)}.')
    doc.extend(body)
    path = os.path.join(out_dir, REPORT_FILE)
    records.write_text_atomically(path, doc.text())
    return Report(path, doc.outline)
