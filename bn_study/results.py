"""Run records to tables: one row per run, then per-placement summaries."""

import json
import os

import pandas as pd

from bn_study import records

# The config values that tell configurations of the seed study apart, shown in tables.
GROUP_KEYS = ('model.bn_position', 'model.bn_on_output')


def _flatten(tree: dict, prefix: str = '') -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def load_runs(sweep_dir: str) -> pd.DataFrame:
    """Every run directory under sweep_dir with a config: its config and summary, flattened."""
    rows = []
    for name in sorted(os.listdir(sweep_dir)):
        workdir = os.path.join(sweep_dir, name)
        config_path = os.path.join(workdir, records.CONFIG_FILE)
        if not os.path.exists(config_path):
            continue
        with open(config_path) as f:
            row = {'run': name, **_flatten(json.load(f))}
        summary = records.read_summary(workdir) or {'status': 'incomplete'}
        row.update(_flatten(summary, 'summary.'))
        rows.append(row)
    return pd.DataFrame(rows)


def placement_table(runs: pd.DataFrame, metric: str = 'summary.final_test_accuracy'):
    """Mean, standard deviation and number of complete seeds of `metric` per placement."""
    done = runs[runs['summary.status'] == records.COMPLETE]
    table = done.groupby(list(GROUP_KEYS))[metric].agg(['mean', 'std', 'count'])
    table = table.rename(columns={'count': 'seeds'}).sort_values('mean', ascending=False)
    failed = runs[runs['summary.status'] != records.COMPLETE].groupby(list(GROUP_KEYS)).size()
    table['not_complete'] = failed.reindex(table.index, fill_value=0)
    return table
