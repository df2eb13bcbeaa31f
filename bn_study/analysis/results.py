"""Run records to tables: one row per run, then per-placement summaries."""

import json
import os

import pandas as pd

from bn_study import records


def _flatten(tree: dict, prefix: str = '') -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{key}.'))
        else:  # JSON lists back to tuples, so every value can be grouped on
            flat[f'{prefix}{key}'] = tuple(value) if isinstance(value, list) else value
    return flat


def load_runs(sweep_dir: str, corrupt: list | None = None) -> pd.DataFrame:
    """Every run directory under sweep_dir with a config: its config and summary, flattened.
    A run whose config or summary does not parse is left out, and its name appended to
    `corrupt` when given."""
    rows = []
    for name in sorted(os.listdir(sweep_dir)):
        workdir = os.path.join(sweep_dir, name)
        config_path = os.path.join(workdir, records.CONFIG_FILE)
        if not os.path.exists(config_path):
            continue
        try:
            with open(config_path) as f:
                row = {'run': name, **_flatten(records.upgrade_config(json.load(f)))}
            summary = records.read_summary(workdir) or {'status': 'incomplete'}
        except (json.JSONDecodeError, UnicodeDecodeError):
            if corrupt is not None:
                corrupt.append(name)
            continue
        row.update(_flatten(summary, 'summary.'))
        rows.append(row)
    return pd.DataFrame(rows)


def configuration_keys(runs: pd.DataFrame) -> list[str]:
    """The config keys whose values differ between runs, seed aside: each distinct
    combination is one configuration, and only seeds are pooled within it."""
    config_columns = [c for c in runs.columns
                      if c not in ('run', 'seed') and not c.startswith('summary.')]
    varying = [c for c in config_columns if runs[c].nunique(dropna=False) > 1]
    return varying or ['model.bn_position']


def placement_table(runs: pd.DataFrame, metric: str = 'summary.final_test_accuracy'):
    """Per configuration: mean, standard deviation and number of complete seeds of `metric`,
    and how many runs diverged or did not complete (diverged ones included). A configuration
    whose runs all diverged stays in the table, with no mean."""
    keys = configuration_keys(runs)
    done = runs[runs['summary.status'] == records.COMPLETE]
    table = done.groupby(keys)[metric].agg(['mean', 'std', 'count'])
    table = table.reindex(runs.groupby(keys).size().index)
    table = table.rename(columns={'count': 'seeds'}).sort_values('mean', ascending=False)
    table['seeds'] = table['seeds'].fillna(0).astype(int)
    count = lambda rows: rows.groupby(keys).size().reindex(table.index, fill_value=0)
    table['diverged'] = count(runs[runs['summary.status'] == records.DIVERGED])
    table['not_complete'] = count(runs[runs['summary.status'] != records.COMPLETE])
    return table
