"""A sweep dir to REPORT.md and PNG figures: per-configuration means with 95% intervals,
paired comparisons on matched seeds of the compared key's values (the placements, unless
the study says otherwise), a ranking, the effect of every other swept setting, the
published claims checked, evaluation kinds side by side, curves, activation statistics,
and a verdict written from the numbers.

This module lays the report out: findings.py computes its tables and sentences (with
stats.py's statistics), claims.py checks the published claims, figures.py draws, and
markdown.py writes text. Each part returns how many paired comparisons it made.
"""

import dataclasses
import os

import pandas as pd

from bn_study import errors, records
from bn_study.analysis import claims, figures, findings, markdown, report_spec, results, stats
from bn_study.studies import sweep_index

# Plotted against when swept (and not the compared key itself).
AXES = ('optimizer.learning_rate', 'batch_size', 'norm.ghost_batch_size')
REPORT_FILE = 'REPORT.md'
PAIRS_COLUMNS = ('a', 'b', 'a - b (points)', '95% CI', 'seeds', 'paired t-test p')


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


def _options(doc: markdown.Document, place: _Place, title: str, setting: dict,
             group: pd.DataFrame) -> int:
    """The compared options of one setting: ranking, every pair, verdict, curves and
    percentiles."""
    name = findings.setting_name(setting)
    per_option = findings.per_option(group, place.compare)
    doc.heading(3, f'{place.compare} compared, {name}', outline=True)
    seeds = [len(v) for v in per_option.values()]
    if seeds and max(seeds) < 2:
        doc.paragraph('One seed per option: no intervals or tests; rerun with more seeds.')
    pairs = []
    if len(per_option) >= 2:
        doc.paragraph('Ranking by mean final test accuracy (ties: options ranked higher whose '
                      'paired difference interval contains zero):')
        doc.paragraph('\n'.join(
            f'{i}. {option}: {mean:.4f}' +
            (f' (not distinguishable from {", ".join(ties)})' if ties else '')
            for i, (option, mean, ties) in enumerate(stats.rank(per_option), 1)))
        pairs = findings.pairs(per_option)
        doc.paragraph(markdown.table(PAIRS_COLUMNS, [
            [p.a, p.b, *markdown.points(p.difference), p.difference.n,
             markdown.number(p.p_value, 3)] for p in pairs]))
    doc.lead('Verdict', ' '.join(findings.verdict(per_option)))
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
    return len(pairs)


def _effects(doc: markdown.Document, compare: str, section: pd.DataFrame) -> int:
    """Per other swept key: its values against its first, the rest held fixed."""
    found = findings.effects(section, compare)
    for key in dict.fromkeys(row['key'] for row in found):
        rows = [row for row in found if row['key'] == key]
        doc.heading(3, f'Effect of {key}', outline=True)
        doc.paragraph(markdown.table(
            (f'{compare} and fixed settings', 'change', *PAIRS_COLUMNS[2:]),
            [[', '.join(f'{v}' for v in row['held'].values()), f'{row["to"]} - {row["from"]}',
              *markdown.points(row['difference']), row['difference'].n,
              markdown.number(row['p_value'], 3)] for row in rows]))
        doc.lead('Effect', ' '.join(findings.effect_sentence(row) for row in rows))
    return len(found)


def _claims(doc: markdown.Document, spec: report_spec.ReportSpec, runs: pd.DataFrame) -> int:
    """Every published claim, checked per held setting."""
    if not spec.claims:
        return 0
    held = results.configuration_keys(runs)
    outcomes = [o for claim in spec.claims for o in claims.check(claim, runs, held)]
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
             section: pd.DataFrame) -> int:
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
        return 0
    comparisons = sum(_options(doc, place, title, setting, group)
                      for setting, group in findings.by_setting(section, place.compare))
    comparisons += _effects(doc, place.compare, section)
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
    return comparisons


def write_report(sweep_dir: str, out_dir: str = '') -> Report:
    """Writes REPORT.md and its figures into out_dir (default: the sweep dir). The study's
    ReportSpec (compared key, published claims) comes from the sweep dir's sweep.json, if it
    has one."""
    out_dir = out_dir or sweep_dir
    os.makedirs(out_dir, exist_ok=True)
    corrupt = []
    runs = results.load_runs(sweep_dir, corrupt)
    if runs.empty:
        raise errors.ConfigError(f'{sweep_dir} holds no run records (no <run>/config.json); '
                                 'run a sweep into it first')
    manifest = sweep_index.read_manifest(sweep_dir) or {}
    spec = report_spec.ReportSpec.from_json(manifest.get('report'))
    place = _Place(sweep_dir, out_dir, spec.compare)
    body = markdown.Document()
    if corrupt:
        body.paragraph(f'Skipped {len(corrupt)} run(s) with unreadable records: '
                       f'{", ".join(corrupt)}.')
    comparisons = _claims(body, spec, runs)
    for title, section in findings.sections(runs):
        comparisons += _section(body, place, title, section)
    doc = markdown.Document()
    doc.heading(1, f'Report: {os.path.normpath(sweep_dir)}')
    doc.paragraph(
        'Generated by `scripts/report.py` from the run records; every number and sentence '
        'below is computed, none is written by hand. Intervals are 95% t intervals over '
        'seeds; comparisons pair runs with the same seed.',
        f'This report makes {comparisons} paired comparisons. Each interval and p-value holds '
        'for its own comparison and is not adjusted for the others: at 95%, about 1 in 20 '
        'comparisons of equal configurations excludes zero by chance.')
    doc.extend(body)
    path = os.path.join(out_dir, REPORT_FILE)
    records.write_text_atomically(path, doc.text())
    return Report(path, doc.outline)
