"""A sweep dir to REPORT.md and PNG figures: per-configuration means with 95% intervals,
paired comparisons of placements on matched seeds, a ranking, learning curves, accuracy
against a swept learning rate or batch size, activation statistics, and a verdict written
from the numbers.

Runs on different datasets or models are never pooled: each (data.name, model.name) is its
own section. Within one, every varying key but `seed` and the placement separates settings,
and placements are compared within a setting.
"""

import math
import os

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use('Agg')  # files only; no display
from matplotlib import pyplot as plt  # noqa: E402

from bn_study import choices, records, results, stats  # noqa: E402

PLACEMENT = 'model.bn_position'
SEPARATE = ('data.name', 'model.name')  # never pooled, never compared
METRICS = {'final test accuracy': 'summary.final_test_accuracy',
           'best test accuracy': 'summary.best_test_accuracy',
           'final test loss': 'summary.final_test_loss'}
AXES = ('optimizer.learning_rate', 'batch_size')  # plotted against when swept
REPORT_FILE = 'REPORT.md'


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


def _settings(runs: pd.DataFrame) -> list[str]:
    """Keys other than seed and placement whose values differ between these runs."""
    return [k for k in results.configuration_keys(runs) if k != PLACEMENT]


def _by_setting(runs: pd.DataFrame):
    keys = _settings(runs)
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


def _per_placement(group: pd.DataFrame) -> dict[str, pd.Series]:
    done = group[group['summary.status'] == records.COMPLETE]
    return {placement: rows.set_index('seed')['summary.final_test_accuracy']
            for placement, rows in done.groupby(PLACEMENT)}


def verdict(per_placement: dict[str, pd.Series]) -> list[str]:
    """Sentences comparing the best placement with each other one, from the intervals."""
    if not per_placement:
        return ['No run here completed; nothing to compare.']
    if len(per_placement) < 2:
        return ['Only one placement has complete runs here; nothing to compare.']
    ranking = stats.rank(per_placement)
    best = ranking[0][0]
    lines = []
    for name, _, _ in ranking[1:]:
        p = stats.paired(best, per_placement[best], name, per_placement[name])
        d = p.difference
        if d.n < 2:
            lines.append(f'{best} vs {name}: {d.n} matched seed(s), too few for an interval; '
                         f'difference {_fmt(d.mean * 100, 2)} points.')
        elif d.excludes_zero():
            test = '' if math.isnan(p.p_value) else f' (paired t-test p={p.p_value:.3f})'
            lines.append(f'{best} beats {name} by {d.mean * 100:.2f} points of test accuracy, '
                         f'95% CI [{d.low * 100:.2f}, {d.high * 100:.2f}], over {d.n} seeds'
                         f'{test}.')
        else:
            lines.append(f'{best} and {name} are not distinguishable at this scale: '
                         f'difference {d.mean * 100:.2f} points, 95% CI [{d.low * 100:.2f}, '
                         f'{d.high * 100:.2f}], over {d.n} seeds.')
    return lines


def _sorted_values(values) -> list:
    """Swept values in their natural order (False before True, small before large)."""
    try:
        return sorted(values)
    except TypeError:  # mixed types: a stable, readable order
        return sorted(values, key=str)


def effects(section: pd.DataFrame) -> list[dict]:
    """For each swept key other than seed and the placement: per placement, with the other
    swept keys held fixed, each of its values against its first, paired on seeds."""
    keys = _settings(section)
    done = section[section['summary.status'] == records.COMPLETE]
    rows = []
    for key in keys:
        held = [PLACEMENT, *(k for k in keys if k != key)]
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


def _curves(runs: pd.DataFrame, sweep_dir: str, path: str, title: str) -> None:
    """Test accuracy and train loss against steps: mean and min-max band over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for placement, group in runs.groupby(PLACEMENT):
        tables = [pd.DataFrame(records.read_metrics(os.path.join(sweep_dir, r)))
                  for r in group['run']]
        tables = [t for t in tables if len(t)]
        if not tables:
            continue
        joined = pd.concat(tables).groupby('step')
        for ax, column in zip(axes, ('test_accuracy', 'train_loss')):
            mean = joined[column].mean()
            line, = ax.plot(mean.index, mean.to_numpy(), marker='o', ms=3, label=placement)
            ax.fill_between(mean.index, joined[column].min(), joined[column].max(),
                            color=line.get_color(), alpha=0.2)
    for ax, column in zip(axes, ('test accuracy', 'train loss')):
        ax.set_xlabel('step')
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
    axes[0].legend(title='bn_position', fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _against(runs: pd.DataFrame, axis: str, path: str, title: str) -> None:
    """Final test accuracy against a swept value per placement; diverged runs as x at 0."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for placement, group in runs.groupby(PLACEMENT):
        done = group[group['summary.status'] == records.COMPLETE]
        mean = done.groupby(axis)['summary.final_test_accuracy'].mean()
        line, = ax.plot(mean.index, mean.to_numpy(), marker='o', label=placement)
        diverged = group[group['summary.status'] == records.DIVERGED]
        ax.scatter(diverged[axis], np.zeros(len(diverged)), marker='x', color=line.get_color())
    ax.set_xscale('log')
    ax.set_xlabel(f'{axis} (x at 0: diverged)')
    ax.set_ylabel('final test accuracy')
    ax.grid(alpha=0.3)
    ax.legend(title='bn_position', fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _diagnostics_table(runs: pd.DataFrame, sweep_dir: str) -> pd.DataFrame | None:
    """Per configuration and norm layer, at each run's last diagnosed step: the variance of
    the norm's input and output, mean over seeds."""
    keys = results.configuration_keys(runs)
    rows = []
    for _, run in runs.iterrows():
        logged = records.read_metrics(os.path.join(sweep_dir, run['run']),
                                      records.DIAGNOSTICS_FILE)
        if logged:
            last = max(r['step'] for r in logged)
            rows += [{**{k: run[k] for k in keys}, 'layer': r['layer'],
                      'input_var': r['input_var'], 'output_var': r['output_var']}
                     for r in logged if r['step'] == last]
    if not rows:
        return None
    return pd.DataFrame(rows).groupby([*keys, 'layer']).mean().reset_index()


def _markdown(table: pd.DataFrame, keys=()) -> str:
    """Config values (keys) as they are, other floats to 4 decimals."""
    header = '| ' + ' | '.join(map(str, table.columns)) + ' |'
    rule = '|' + '---|' * len(table.columns)
    cell = lambda column, v: _fmt(v) if isinstance(v, float) and column not in keys else str(v)
    body = ['| ' + ' | '.join(cell(c, v) for c, v in zip(table.columns, row)) + ' |'
            for row in table.itertuples(index=False)]
    return '\n'.join([header, rule, *body])


def write_report(sweep_dir: str, out_dir: str = '') -> str:
    """Writes REPORT.md and its figures into out_dir (default: the sweep dir); returns the
    report's path."""
    out_dir = out_dir or sweep_dir
    os.makedirs(out_dir, exist_ok=True)
    corrupt = []
    runs = results.load_runs(sweep_dir, corrupt)
    if runs.empty:
        raise choices.ConfigError(f'{sweep_dir} holds no run records (no <run>/config.json); '
                                  'run a sweep into it first')
    lines = [f'# Report: {os.path.normpath(sweep_dir)}', '',
             'Generated by `scripts/report.py` from the run records; every number and sentence '
             'below is computed, none is written by hand. Intervals are 95% t intervals over '
             'seeds; comparisons pair runs with the same seed.', '']
    header_end = len(lines)
    comparisons = 0
    if corrupt:
        lines += [f'Skipped {len(corrupt)} run(s) with unreadable records: '
                  f'{", ".join(corrupt)}.', '']
    present = [k for k in SEPARATE if k in runs]
    sections = runs.groupby(present, dropna=False) if present else [((), runs)]
    for values, section in sections:
        values = values if isinstance(values, tuple) else (values,)
        title = ', '.join(f'{k}={v}' for k, v in zip(present, values))
        lines += [f'## {title}', '', f'{len(section)} runs; {int((section["summary.status"] == records.COMPLETE).sum())} complete, '
                  f'{int((section["summary.status"] == records.DIVERGED).sum())} diverged.', '',
                  '### Per configuration', '', _markdown(configuration_table(section),
                                                                  results.configuration_keys(section)), '']
        for setting, group in _by_setting(section):
            name = _setting_name(setting)
            per_placement = _per_placement(group)
            lines += [f'### Placements, {name}', '']
            seeds = [len(v) for v in per_placement.values()]
            if seeds and max(seeds) < 2:
                lines += ['One seed per placement: no intervals or tests; rerun with more seeds.',
                          '']
            if len(per_placement) >= 2:
                lines += ['Ranking by mean final test accuracy (ties: placements ranked higher '
                          'whose paired difference interval contains zero):', '']
                for i, (placement, mean, ties) in enumerate(stats.rank(per_placement), 1):
                    tie = f' (not distinguishable from {", ".join(ties)})' if ties else ''
                    lines.append(f'{i}. {placement}: {mean:.4f}{tie}')
                lines += ['', '| a | b | a - b (points) | 95% CI | seeds | paired t-test p |',
                          '|---|---|---|---|---|---|']
                names = sorted(per_placement)
                for i, a in enumerate(names):
                    for b in names[i + 1:]:
                        p = stats.paired(a, per_placement[a], b, per_placement[b])
                        comparisons += 1
                        d = p.difference
                        lines.append(f'| {a} | {b} | {_fmt(d.mean * 100, 2)} | '
                                     f'[{_fmt(d.low * 100, 2)}, {_fmt(d.high * 100, 2)}] | '
                                     f'{d.n} | {_fmt(p.p_value, 3)} |')
                lines.append('')
            lines += ['**Verdict.** ' + ' '.join(verdict(per_placement)), '']
            figure = f'curves_{_slug(title + "_" + name)}.png'
            _curves(group, sweep_dir, os.path.join(out_dir, figure), f'{title}; {name}')
            lines += [f'![learning curves]({figure})', '']
        found = effects(section)
        for key in dict.fromkeys(row['key'] for row in found):
            lines += [f'### Effect of {key}', '',
                      '| placement and fixed settings | change | a - b (points) | 95% CI | seeds '
                      '| paired t-test p |', '|---|---|---|---|---|---|']
            rows = [row for row in found if row['key'] == key]
            comparisons += len(rows)
            for row in rows:
                d = row['difference']
                held = ', '.join(f'{v}' for v in row['held'].values())
                lines.append(f'| {held} | {row["to"]} - {row["from"]} | {_fmt(d.mean * 100, 2)} '
                             f'| [{_fmt(d.low * 100, 2)}, {_fmt(d.high * 100, 2)}] | {d.n} | '
                             f'{_fmt(row["p_value"], 3)} |')
            lines += ['', '**Effect.** ' + ' '.join(effect_sentence(row) for row in rows), '']
        for axis in AXES:
            if axis in results.configuration_keys(section):
                figure = f'against_{_slug(title + "_" + axis)}.png'
                _against(section, axis, os.path.join(out_dir, figure), title)
                lines += [f'### Final test accuracy against {axis}', '', f'![{axis}]({figure})',
                          '']
        diagnostics = _diagnostics_table(section, sweep_dir)
        if diagnostics is not None:
            lines += ['### Activation statistics at the last diagnosed step (mean over runs)',
                      '', _markdown(diagnostics, results.configuration_keys(section)), '']
    lines[header_end:header_end] = [
        f'This report makes {comparisons} paired comparisons. Each interval and p-value holds '
        'for its own comparison and is not adjusted for the others: at 95%, about 1 in 20 '
        'comparisons of equal configurations excludes zero by chance.', '']
    path = os.path.join(out_dir, REPORT_FILE)
    records.write_text_atomically(path, '\n'.join(lines))
    return path


def verdict_lines(report_path: str) -> list[str]:
    """The written report's section titles and verdicts, to print at the end of a sweep."""
    with open(report_path) as f:
        return [line.lstrip('#* ').replace('Verdict.** ', '  ').replace('Effect.** ', '  ')
                for line in f if line.startswith(('## ', '### Placements', '**Verdict.**',
                                                  '### Effect', '**Effect.**'))]
