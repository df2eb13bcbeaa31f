"""What a report finds in a sweep's runs, as tables and sentences that report.py lays out:
sections never pooled, settings within a section, per-configuration intervals, the compared
options ranked and paired on seeds, the effect of every other swept key, evaluation kinds
side by side, and the norms' activation statistics.

Runs on different datasets or models are never pooled: each (data.name, model.name) is its
own section. Within one, every varying key but `seed` and the compared key separates
settings, and the compared values are ranked within a setting. The statistics themselves
are stats.py's.
"""

import math
import os

import numpy as np
import pandas as pd

from bn_study import records
from bn_study.analysis import answer, report_spec, results, stats

METRICS = {'final test accuracy': 'summary.final_test_accuracy',
           'final validation accuracy': 'summary.final_val_accuracy',
           'test accuracy at the epoch validation selects':
               'summary.selected_test_accuracy',
           'final test loss': 'summary.final_test_loss'}
LAST_EPOCHS = 3  # spread across checkpoints: the std of the last epochs' test accuracies


def _values(values) -> tuple:
    """A groupby key as a tuple (pandas gives a scalar when grouping on one key)."""
    return values if isinstance(values, tuple) else (values,)


def sections(runs: pd.DataFrame):
    """(title, runs) per combination of the keys never pooled (NEVER_POOLED)."""
    present = [k for k in report_spec.NEVER_POOLED if k in runs]
    groups = runs.groupby(present, dropna=False) if present else [((), runs)]
    for values, section in groups:
        yield ', '.join(f'{k}={v}' for k, v in zip(present, _values(values))), section


def count_status(runs: pd.DataFrame, status: str) -> int:
    return int((runs['summary.status'] == status).sum())


def _complete(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs['summary.status'] == records.COMPLETE]


def _settings(runs: pd.DataFrame, compare: str) -> list[str]:
    """Keys other than seed and the compared one whose values differ between these runs."""
    return [k for k in results.configuration_keys(runs) if k != compare]


def by_setting(runs: pd.DataFrame, compare: str):
    """(setting, runs) per combination of the settings (_settings); {} when there are none."""
    keys = _settings(runs, compare)
    if not keys:
        yield {}, runs
        return
    for values, group in runs.groupby(keys, dropna=False):
        yield dict(zip(keys, _values(values))), group


def setting_name(setting: dict) -> str:
    return ', '.join(f'{k}={v}' for k, v in setting.items()) or 'all runs'


def configuration_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: each metric's mean and 95% interval (stats.Interval) over complete
    seeds, the number of seeds, and how many runs diverged."""
    keys = results.configuration_keys(runs)
    rows = []
    for values, group in runs.groupby(keys, dropna=False):
        done = _complete(group)
        row = dict(zip(keys, _values(values)))
        for label, column in METRICS.items():
            row[label] = stats.mean_interval(done[column].dropna() if column in done else [])
        row['seeds'] = len(done)
        row['diverged'] = count_status(group, records.DIVERGED)
        rows.append(row)
    return pd.DataFrame(rows)


def per_option(group: pd.DataFrame, compare: str) -> dict[str, pd.Series]:
    """Per compared value (as str): final test accuracy of the complete runs, by seed."""
    return {str(option): rows.set_index('seed')['summary.final_test_accuracy']
            for option, rows in _complete(group).groupby(compare)}


def pairs(per_option: dict[str, pd.Series]) -> list[tuple[str, str]]:
    """Every two options (a, b), a before b in name order: the pairs a setting compares."""
    names = sorted(per_option)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


def decision_sentence(d) -> str:
    """One decided comparison (decide.Decision) in a sentence."""
    diff = d.difference
    measured = (f'{d.a} - {d.b} = {diff.mean * 100:+.2f} points' if diff.n < 2 else
                f'{d.a} - {d.b} = {diff.mean * 100:+.2f} points, 95% CI '
                f'[{diff.low * 100:.2f}, {diff.high * 100:.2f}]')
    return f'{measured} over {diff.n} seeds: {answer.phrase(d)}.'


def verdict(per_option: dict[str, pd.Series], decisions: list) -> list[str]:
    """Sentences deciding the best option (by mean) against each other one."""
    if not per_option:
        return ['No run here completed; nothing to compare.']
    if len(per_option) < 2:
        return ['Only one option has complete runs here; nothing to compare.']
    order = sorted(per_option, key=lambda k: -per_option[k].mean())
    return [decision_sentence(answer.relation(order[0], name, decisions)[1])
            for name in order[1:]]


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
    done = _complete(section)
    rows = []
    for key in keys:
        held = [compare, *(k for k in keys if k != key)]
        for fixed, group in done.groupby(held, dropna=False):
            fixed = dict(zip(held, _values(fixed)))
            by_value = {v: g.set_index('seed')['summary.final_test_accuracy']
                        for v, g in group.groupby(key)}
            values = _sorted_values(by_value)
            for value in values[1:]:
                p = stats.paired(str(value), by_value[value], str(values[0]),
                                 by_value[values[0]])
                rows.append({'key': key, 'from': values[0], 'to': value, 'held': fixed,
                             'difference': p.difference, 'p_value': p.p_value,
                             'to_values': by_value[value], 'from_values': by_value[values[0]]})
    return rows


def effect_sentence(row: dict, decision) -> str:
    """One generated sentence for a row of effects(), with its decision."""
    held = ', '.join(f'{k.split(".")[-1]}={v}' for k, v in row['held'].items())
    return f'{row["key"]} ({held}): {decision_sentence(decision)}'


def diagnostics(runs: pd.DataFrame, sweep_dir: str) -> list[dict]:
    """Every diagnostics row of every run, with the run's configuration keys."""
    keys = results.configuration_keys(runs)
    rows = []
    for _, run in runs.iterrows():
        for row in records.read_metrics(os.path.join(sweep_dir, run['run']),
                                        records.DIAGNOSTICS_FILE):
            rows.append({**{k: run[k] for k in keys}, 'seed': run['seed'], **row})
    return rows


def norm_table(rows: list[dict], keys: list[str]) -> pd.DataFrame | None:
    """Per configuration and norm layer, at each run's last diagnosed step: the variance of
    the norm's input and output, mean over seeds; None without norm rows."""
    norm_rows = pd.DataFrame([r for r in rows if 'input_var' in r])
    if norm_rows.empty:
        return None
    last = norm_rows.groupby([*keys, 'seed'])['step'].transform('max')
    norm_rows = norm_rows[norm_rows['step'] == last]
    return (norm_rows[[*keys, 'layer', 'input_var', 'output_var']]
            .groupby([*keys, 'layer']).mean().reset_index())


def eval_kinds(section: pd.DataFrame) -> tuple | None:
    """The evaluation kinds every run of the section used, if they are one set of two or
    more (else None: nothing to set side by side)."""
    kinds = {tuple(k) for k in section['eval.stats'].dropna()} if 'eval.stats' in section \
        else set()
    if len(kinds) != 1 or len(next(iter(kinds))) < 2:
        return None
    return next(iter(kinds))


def eval_kinds_table(runs: pd.DataFrame, sweep_dir: str, kinds: tuple) -> pd.DataFrame:
    """Per configuration and evaluation kind: final test accuracy (mean and 95% interval over
    seeds) and its spread across checkpoints: the std of the last LAST_EPOCHS epochs' test
    accuracies, mean over seeds."""
    keys = results.configuration_keys(runs)
    rows = []
    for values, group in _complete(runs).groupby(keys, dropna=False):
        histories = [records.read_metrics(os.path.join(sweep_dir, r)) for r in group['run']]
        for kind in kinds:
            column = f'summary.final_test_accuracy_{kind}'
            spread = [np.std([row[f'test_accuracy_{kind}'] for row in h[-LAST_EPOCHS:]])
                      for h in histories if len(h) >= 2]
            rows.append({**dict(zip(keys, _values(values))), 'eval': kind,
                         'final test accuracy': stats.mean_interval(
                             group[column].dropna() if column in group else []),
                         f'std over the last {LAST_EPOCHS} epochs': (
                             float(np.mean(spread)) if spread else math.nan)})
    return pd.DataFrame(rows)
