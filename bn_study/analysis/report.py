"""A sweep dir to REPORT.md and PNG figures: per-configuration means with 95% intervals,
paired comparisons on matched seeds of the compared key's values (the placements, unless
the study says otherwise), a ranking, the effect of every other swept setting, the
published claims checked, evaluation kinds side by side, curves, activation statistics,
and a verdict written from the numbers.

Runs on different datasets or models are never pooled: each (data.name, model.name) is its
own section. Within one, every varying key but `seed` and the compared key separates
settings, and the compared values are ranked within a setting.
"""

import math
import os
import re

import numpy as np
import pandas as pd

from bn_study.analysis import figures
from bn_study.analysis import claims, report_spec
from bn_study import records
from bn_study.analysis import results
from bn_study.analysis import stats
from bn_study.studies import sweep_index
from bn_study import errors

SEPARATE = report_spec.NEVER_POOLED  # each its own section
METRICS = {'final test accuracy': 'summary.final_test_accuracy',
           'best test accuracy': 'summary.best_test_accuracy',
           'final test loss': 'summary.final_test_loss'}
# Plotted against when swept (and not the compared key itself).
AXES = ('optimizer.learning_rate', 'batch_size', 'norm.ghost_batch_size')
REPORT_FILE = 'REPORT.md'
LAST_EPOCHS = 3  # spread across checkpoints: the std of the last epochs' test accuracies


def _fmt(value, digits=4) -> str:
    return '-' if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f'{value:.{digits}f}')


def _interval(interval: stats.Interval, scale: float = 1.0, digits: int = 4) -> str:
    if interval.n == 0:
        return '-'
    if interval.n < 2:
        return f'{interval.mean * scale:.{digits}f} (1 seed, no interval)'
    return (f'{interval.mean * scale:.{digits}f} [{interval.low * scale:.{digits}f}, '
            f'{interval.high * scale:.{digits}f}]')


def _settings(runs: pd.DataFrame, compare: str) -> list[str]:
    """Keys other than seed and the compared one whose values differ between these runs."""
    return [k for k in results.configuration_keys(runs) if k != compare]


def _by_setting(runs: pd.DataFrame, compare: str):
    keys = _settings(runs, compare)
    if not keys:
        yield {}, runs
        return
    for values, group in runs.groupby(keys, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield dict(zip(keys, values)), group


def _setting_name(setting: dict) -> str:
    return ', '.join(f'{k}={v}' for k, v in setting.items()) or 'all runs'


def _slug(text: str) -> str:
    return ''.join(c if c.isalnum() or c in '.-' else '_' for c in text)[:80]


def configuration_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: each metric's mean and 95% interval over complete seeds, the number
    of seeds, and how many runs diverged."""
    keys = results.configuration_keys(runs)
    rows = []
    for values, group in runs.groupby(keys, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        done = group[group['summary.status'] == records.COMPLETE]
        row = dict(zip(keys, values))
        for label, column in METRICS.items():
            row[label] = _interval(stats.mean_interval(done[column].dropna()) if column in done
                                   else stats.mean_interval([]))
        row['seeds'] = len(done)
        row['diverged'] = int((group['summary.status'] == records.DIVERGED).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _per_option(group: pd.DataFrame, compare: str) -> dict[str, pd.Series]:
    done = group[group['summary.status'] == records.COMPLETE]
    return {str(option): rows.set_index('seed')['summary.final_test_accuracy']
            for option, rows in done.groupby(compare)}


def verdict(per_option: dict[str, pd.Series]) -> list[str]:
    """Sentences comparing the best option with each other one, from the intervals."""
    if not per_option:
        return ['No run here completed; nothing to compare.']
    if len(per_option) < 2:
        return ['Only one option has complete runs here; nothing to compare.']
    ranking = stats.rank(per_option)
    best = ranking[0][0]
    lines = []
    for name, _, _ in ranking[1:]:
        p = stats.paired(best, per_option[best], name, per_option[name])
        d = p.difference
        if d.n < 2:
            lines.append(f'{best} vs {name}: {d.n} matched seed(s), too few for an interval; '
                         f'difference {_fmt(d.mean * 100, 2)} points.')
        elif d.excludes_zero():
            # The ranking's means are over each option's own seeds; on the shared seeds the
            # lower-ranked option can be the better one.
            winner, loser, sign = (best, name, 1) if d.mean > 0 else (name, best, -1)
            test = '' if math.isnan(p.p_value) else f' (paired t-test p={p.p_value:.3f})'
            low, high = sorted((sign * d.low * 100, sign * d.high * 100))
            lines.append(f'{winner} beats {loser} by {sign * d.mean * 100:.2f} points of test '
                         f'accuracy, 95% CI [{low:.2f}, {high:.2f}], over {d.n} seeds{test}.')
        else:
            lines.append(f'{best} and {name} are not distinguishable at this scale: '
                         f'difference {d.mean * 100:.2f} points, 95% CI [{d.low * 100:.2f}, '
                         f'{d.high * 100:.2f}], over {d.n} seeds.')
    return lines


def _forward_position(layer: str) -> tuple:
    """Where an activation's input lies in the forward pass: plain blocks (models/blocks.py)
    name their layers conv1, conv2, ... then fc1, fc2, ...; diagnostics rows are sorted by
    name, which puts act_conv2 after act_fc1."""
    match = re.fullmatch(r'act_(conv|fc)(\d+)', layer.rsplit('/', 1)[-1])
    return (match.group(1) == 'fc', int(match.group(2))) if match else (False, -1)


def _sorted_values(values) -> list:
    """Swept values in their natural order (False before True, small before large)."""
    try:
        return sorted(values)
    except TypeError:  # mixed types: a stable, readable order
        return sorted(values, key=str)


def effects(section: pd.DataFrame, compare: str) -> list[dict]:
    """For each swept key other than seed and the compared one: per compared value, with the
    other swept keys held fixed, each of its values against its first, paired on seeds."""
    keys = _settings(section, compare)
    done = section[section['summary.status'] == records.COMPLETE]
    rows = []
    for key in keys:
        held = [compare, *(k for k in keys if k != key)]
        for fixed, group in done.groupby(held, dropna=False):
            fixed = dict(zip(held, fixed if isinstance(fixed, tuple) else (fixed,)))
            by_value = {v: g.set_index('seed')['summary.final_test_accuracy']
                        for v, g in group.groupby(key)}
            values = _sorted_values(by_value)
            for value in values[1:]:
                p = stats.paired(str(value), by_value[value], str(values[0]),
                                 by_value[values[0]])
                rows.append({'key': key, 'from': values[0], 'to': value, 'held': fixed,
                             'difference': p.difference, 'p_value': p.p_value})
    return rows


def effect_sentence(row: dict) -> str:
    """One generated sentence for a row of effects()."""
    held = ', '.join(f'{k.split(".")[-1]}={v}' for k, v in row['held'].items())
    d = row['difference']
    change = (f'{row["key"]}={row["to"]} instead of {row["from"]} ({held}): '
              f'{d.mean * 100:+.2f} points of test accuracy')
    if d.n < 2:
        return f'{change}, {d.n} matched seed(s), too few for an interval.'
    judged = ('distinguishable from no change' if d.excludes_zero()
              else 'not distinguishable from no change at this scale')
    return (f'{change}, 95% CI [{d.low * 100:.2f}, {d.high * 100:.2f}], over {d.n} seeds: '
            f'{judged}.')


def _diagnostics(runs: pd.DataFrame, sweep_dir: str) -> list[dict]:
    """Every diagnostics row of every run, with the run's configuration keys."""
    keys = results.configuration_keys(runs)
    rows = []
    for _, run in runs.iterrows():
        for row in records.read_metrics(os.path.join(sweep_dir, run['run']),
                                        records.DIAGNOSTICS_FILE):
            rows.append({**{k: run[k] for k in keys}, 'seed': run['seed'], **row})
    return rows


def _norm_table(rows: list[dict], keys: list[str]) -> pd.DataFrame | None:
    """Per configuration and norm layer, at each run's last diagnosed step: the variance of
    the norm's input and output, mean over seeds."""
    norm_rows = pd.DataFrame([r for r in rows if 'input_var' in r])
    if norm_rows.empty:
        return None
    last = norm_rows.groupby([*keys, 'seed'])['step'].transform('max')
    norm_rows = norm_rows[norm_rows['step'] == last]
    return (norm_rows[[*keys, 'layer', 'input_var', 'output_var']]
            .groupby([*keys, 'layer']).mean().reset_index())


def eval_kinds_table(runs: pd.DataFrame, sweep_dir: str, kinds: tuple) -> pd.DataFrame:
    """Per configuration and evaluation kind: final test accuracy (mean and 95% interval over
    seeds) and its spread across checkpoints: the std of the last LAST_EPOCHS epochs' test
    accuracies, mean over seeds."""
    keys = results.configuration_keys(runs)
    done = runs[runs['summary.status'] == records.COMPLETE]
    rows = []
    for values, group in done.groupby(keys, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        histories = [records.read_metrics(os.path.join(sweep_dir, r)) for r in group['run']]
        for kind in kinds:
            column = f'summary.final_test_accuracy_{kind}'
            spread = [np.std([row[f'test_accuracy_{kind}'] for row in h[-LAST_EPOCHS:]])
                      for h in histories if len(h) >= 2]
            rows.append({**dict(zip(keys, values)), 'eval': kind,
                         'final test accuracy': _interval(stats.mean_interval(
                             group[column].dropna() if column in group else [])),
                         f'std over the last {LAST_EPOCHS} epochs': (
                             float(np.mean(spread)) if spread else math.nan)})
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame, keys=()) -> str:
    """Config values (keys) as they are, other floats to 4 decimals."""
    header = '| ' + ' | '.join(map(str, table.columns)) + ' |'
    rule = '|' + '---|' * len(table.columns)
    cell = lambda column, v: _fmt(v) if isinstance(v, float) and column not in keys else str(v)
    body = ['| ' + ' | '.join(cell(c, v) for c, v in zip(table.columns, row)) + ' |'
            for row in table.itertuples(index=False)]
    return '\n'.join([header, rule, *body])


class _Writer:
    """Collects the report's lines and counts its paired comparisons."""

    def __init__(self, sweep_dir: str, out_dir: str, spec: report_spec.ReportSpec):
        self.sweep_dir, self.out_dir, self.spec = sweep_dir, out_dir, spec
        self.lines, self.comparisons = [], 0

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def figure(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def options(self, title: str, setting: dict, group: pd.DataFrame) -> None:
        compare = self.spec.compare
        name = _setting_name(setting)
        per_option = _per_option(group, compare)
        self.add(f'### {compare} compared, {name}', '')
        seeds = [len(v) for v in per_option.values()]
        if seeds and max(seeds) < 2:
            self.add('One seed per option: no intervals or tests; rerun with more seeds.', '')
        if len(per_option) >= 2:
            self.add('Ranking by mean final test accuracy (ties: options ranked higher whose '
                     'paired difference interval contains zero):', '')
            for i, (option, mean, ties) in enumerate(stats.rank(per_option), 1):
                tie = f' (not distinguishable from {", ".join(ties)})' if ties else ''
                self.add(f'{i}. {option}: {mean:.4f}{tie}')
            self.add('', '| a | b | a - b (points) | 95% CI | seeds | paired t-test p |',
                     '|---|---|---|---|---|---|')
            names = sorted(per_option)
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    p = stats.paired(a, per_option[a], b, per_option[b])
                    self.comparisons += 1
                    d = p.difference
                    self.add(f'| {a} | {b} | {_fmt(d.mean * 100, 2)} | '
                             f'[{_fmt(d.low * 100, 2)}, {_fmt(d.high * 100, 2)}] | {d.n} | '
                             f'{_fmt(p.p_value, 3)} |')
            self.add('')
        self.add('**Verdict.** ' + ' '.join(verdict(per_option)), '')
        figure = f'curves_{_slug(title + "_" + name)}.png'
        figures.curves(group, compare, self.sweep_dir, self.figure(figure), f'{title}; {name}')
        self.add(f'![learning curves]({figure})', '')
        self.percentiles(f'{title}; {name}', group)

    def percentiles(self, title: str, group: pd.DataFrame) -> None:
        """The logged percentiles of the last activation's input over training, per compared
        value, for one setting (scales differ between settings)."""
        rows = pd.DataFrame([r for r in _diagnostics(group, self.sweep_dir)
                             if figures.percentile_columns(r)])
        if rows.empty:
            return
        layer = max(rows['layer'], key=_forward_position)
        figure = f'percentiles_{_slug(title + "_" + layer)}.png'
        if self.spec.compare not in rows:  # the compared key does not vary here
            rows[self.spec.compare] = group[self.spec.compare].iloc[0]
        figures.percentiles(rows[rows['layer'] == layer], self.spec.compare,
                            self.figure(figure), f'{title}; input of {layer}')
        self.add(f'Percentiles of the input of {layer} over training (mean over seeds):', '',
                 f'![percentiles]({figure})', '')

    def effects(self, section: pd.DataFrame) -> None:
        found = effects(section, self.spec.compare)
        for key in dict.fromkeys(row['key'] for row in found):
            rows = [row for row in found if row['key'] == key]
            self.comparisons += len(rows)
            self.add(f'### Effect of {key}', '',
                     f'| {self.spec.compare} and fixed settings | change | a - b (points) | '
                     '95% CI | seeds | paired t-test p |', '|---|---|---|---|---|---|')
            for row in rows:
                d = row['difference']
                held = ', '.join(f'{v}' for v in row['held'].values())
                self.add(f'| {held} | {row["to"]} - {row["from"]} | {_fmt(d.mean * 100, 2)} '
                         f'| [{_fmt(d.low * 100, 2)}, {_fmt(d.high * 100, 2)}] | {d.n} | '
                         f'{_fmt(row["p_value"], 3)} |')
            self.add('', '**Effect.** ' + ' '.join(effect_sentence(row) for row in rows), '')

    def eval_kinds(self, section: pd.DataFrame) -> None:
        kinds = {tuple(k) for k in section['eval.stats'].dropna()} if 'eval.stats' in section \
            else set()
        if len(kinds) != 1 or len(next(iter(kinds))) < 2:
            return
        table = eval_kinds_table(section, self.sweep_dir, next(iter(kinds)))
        self.add('### Evaluation statistics side by side', '',
                 'The same trained weights evaluated with each kind of BN statistics (ema: the '
                 'running averages; precise: PreciseBN; batch: each test batch its own).', '',
                 _markdown(table, results.configuration_keys(section)), '')

    def diagnostics(self, section: pd.DataFrame) -> None:
        keys = results.configuration_keys(section)
        rows = _diagnostics(section, self.sweep_dir)
        table = _norm_table(rows, keys)
        if table is not None:
            self.add('### Activation statistics at the last diagnosed step (mean over runs)',
                     '', _markdown(table, keys), '')

    def claims(self, runs: pd.DataFrame) -> None:
        if not self.spec.claims:
            return
        held = [k for k in results.configuration_keys(runs)]
        outcomes = [o for claim in self.spec.claims for o in claims.check(claim, runs, held)]
        self.comparisons += sum(o.difference.n >= 2 for o in outcomes)
        # Counted by the verdict's first words; after ':' or ';' come details.
        verdicts = pd.Series([re.split('[:;]', o.verdict)[0] for o in outcomes]).value_counts()
        self.add('## Published results side by side', '',
                 'Each claim is checked on the runs here, at this study\'s scale, pairing the '
                 'two sides by seed: "agrees" when the 95% interval of better - worse lies '
                 'above zero, "disagrees" when it lies below, else "not distinguishable at this '
                 'scale" (for "no worse" claims, "consistent": not refuted, not confirmed).', '',
                 claims.TABLE_HEADER, *map(claims.outcome_row, outcomes), '',
                 '**Published.** ' + ', '.join(f'{n} {v}' for v, n in verdicts.items()) +
                 f' (of {len(outcomes)}).', '')


def write_report(sweep_dir: str, out_dir: str = '') -> str:
    """Writes REPORT.md and its figures into out_dir (default: the sweep dir); returns the
    report's path. The study's ReportSpec (compared key, published claims) comes from the
    sweep dir's sweep.json, if it has one."""
    out_dir = out_dir or sweep_dir
    os.makedirs(out_dir, exist_ok=True)
    corrupt = []
    runs = results.load_runs(sweep_dir, corrupt)
    if runs.empty:
        raise errors.ConfigError(f'{sweep_dir} holds no run records (no <run>/config.json); '
                                  'run a sweep into it first')
    manifest = sweep_index.read_manifest(sweep_dir) or {}
    spec = report_spec.ReportSpec.from_json(manifest.get('report'))
    writer = _Writer(sweep_dir, out_dir, spec)
    writer.add(f'# Report: {os.path.normpath(sweep_dir)}', '',
               'Generated by `scripts/report.py` from the run records; every number and '
               'sentence below is computed, none is written by hand. Intervals are 95% t '
               'intervals over seeds; comparisons pair runs with the same seed.', '')
    header_end = len(writer.lines)
    if corrupt:
        writer.add(f'Skipped {len(corrupt)} run(s) with unreadable records: '
                   f'{", ".join(corrupt)}.', '')
    writer.claims(runs)
    present = [k for k in SEPARATE if k in runs]
    sections = runs.groupby(present, dropna=False) if present else [((), runs)]
    for values, section in sections:
        values = values if isinstance(values, tuple) else (values,)
        title = ', '.join(f'{k}={v}' for k, v in zip(present, values))
        complete = int((section['summary.status'] == records.COMPLETE).sum())
        diverged = int((section['summary.status'] == records.DIVERGED).sum())
        writer.add(f'## {title}', '',
                   f'{len(section)} runs; {complete} complete, {diverged} diverged.', '',
                   '### Per configuration', '',
                   _markdown(configuration_table(section), results.configuration_keys(section)),
                   '')
        if spec.compare not in section:
            writer.add(f'No run here sets {spec.compare}; nothing to compare.', '')
            continue
        for setting, group in _by_setting(section, spec.compare):
            writer.options(title, setting, group)
        writer.effects(section)
        for axis in AXES:
            if axis != spec.compare and axis in results.configuration_keys(section):
                figure = f'against_{_slug(title + "_" + axis)}.png'
                figures.against(section, spec.compare, axis, writer.figure(figure), title)
                writer.add(f'### Final test accuracy against {axis}', '',
                           f'![{axis}]({figure})', '')
        writer.eval_kinds(section)
        writer.diagnostics(section)
    writer.lines[header_end:header_end] = [
        f'This report makes {writer.comparisons} paired comparisons. Each interval and p-value '
        'holds for its own comparison and is not adjusted for the others: at 95%, about 1 in '
        '20 comparisons of equal configurations excludes zero by chance.', '']
    path = os.path.join(out_dir, REPORT_FILE)
    records.write_text_atomically(path, '\n'.join(writer.lines))
    return path


def verdict_lines(report_path: str) -> list[str]:
    """The written report's section titles and verdicts, to print at the end of a sweep."""
    prefixes = ('## ', '### Effect', '**Verdict.**', '**Effect.**', '**Published.**')
    with open(report_path) as f:
        return [line.lstrip('#* ').replace('Verdict.** ', '  ').replace('Effect.** ', '  ')
                .replace('Published.** ', '  ') for line in f
                if line.startswith(prefixes) or ' compared, ' in line]
