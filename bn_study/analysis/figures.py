"""The report's PNG figures, each drawn from run records: learning curves, accuracy against
a swept value, and percentiles of an activation's input over training. Each is written into
the report's folder under file_name(); the report links it by that name."""

import os
import re

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use('Agg')  # files only; no display
from matplotlib import pyplot as plt  # noqa: E402

from bn_study import records


def file_name(kind: str, *parts: str) -> str:
    """'<kind>_<slug>.png': the parts joined by '_', every character but letters, digits,
    '.' and '-' as '_', cut to 80 characters."""
    text = '_'.join(parts)
    return f'{kind}_{"".join(c if c.isalnum() or c in ".-" else "_" for c in text)[:80]}.png'


# More lines than this get their legend beside the axes rather than over the lines.
LEGEND_INSIDE = 8


def _style(i: int) -> dict:
    """The i-th line's style: matplotlib's ten default colours, then the same colours
    dashed, then dotted, so up to 30 options stay apart (an ablation has 18)."""
    return {'color': f'C{i % 10}', 'linestyle': ('-', '--', ':')[i // 10 % 3]}


def _legend(fig, ax, title: str | None = None) -> bool:
    """The legend of `ax`'s lines: inside it for a few, beside the whole figure for many;
    returns whether it went beside (the figure is then saved wide enough to hold it)."""
    handles, labels = ax.get_legend_handles_labels()
    if not labels:  # no run had a curve to draw
        return False
    if len(labels) <= LEGEND_INSIDE:
        ax.legend(title=title, fontsize=8)
        return False
    fig.legend(handles, labels, title=title, fontsize=8, loc='upper left',
               bbox_to_anchor=(1.0, 0.95))
    return True


def _save(fig, path: str, title: str, wide: bool = False) -> None:
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90, **({'bbox_inches': 'tight'} if wide else {}))
    plt.close(fig)


def curves(runs: pd.DataFrame, compare: str, sweep_dir: str, path: str, title: str) -> None:
    """Test accuracy and train loss against steps per compared value: mean and min-max band
    over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (option, group) in enumerate(runs.groupby(compare)):
        tables = [pd.DataFrame(records.read_metrics(os.path.join(sweep_dir, r)))
                  for r in group['run']]
        tables = [t for t in tables if len(t)]
        if not tables:
            continue
        joined = pd.concat(tables).groupby('step')
        for ax, column in zip(axes, ('test_accuracy', 'train_loss')):
            mean = joined[column].mean()
            line, = ax.plot(mean.index, mean.to_numpy(), marker='o', ms=3, label=str(option),
                            **_style(i))
            ax.fill_between(mean.index, joined[column].min(), joined[column].max(),
                            color=line.get_color(), alpha=0.2)
    for ax, column in zip(axes, ('test accuracy', 'train loss')):
        ax.set_xlabel('step')
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
    _save(fig, path, title, _legend(fig, axes[0], compare.split('.')[-1]))


def against(runs: pd.DataFrame, compare: str, axis: str, path: str, title: str) -> None:
    """Final test accuracy against a swept value per compared value; diverged runs as x at 0."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (option, group) in enumerate(runs.groupby(compare)):
        done = group[group['summary.status'] == records.COMPLETE]
        mean = done.groupby(axis)['summary.final_test_accuracy'].mean()
        line, = ax.plot(mean.index, mean.to_numpy(), marker='o', label=str(option),
                        **_style(i))
        diverged = group[group['summary.status'] == records.DIVERGED]
        ax.scatter(diverged[axis], np.zeros(len(diverged)), marker='x', color=line.get_color())
    ax.set_xscale('log')
    ax.set_xlabel(f'{axis} (x at 0: diverged)')
    ax.set_ylabel('final test accuracy')
    ax.grid(alpha=0.3)
    _save(fig, path, title, _legend(fig, ax, compare.split('.')[-1]))


def tuning_curves(table: pd.DataFrame, key: str, path: str, title: str) -> None:
    """Mean validation accuracy against the tuned value per option (tuning.tuning_table's
    rows); a failed point (a seed diverged) as x at 0."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (option, rows) in enumerate(table.groupby('option', sort=False)):
        values = np.array([point[key] for point in rows['point']], dtype=float)
        failed = rows['failed'].to_numpy(bool)
        line, = ax.plot(values[~failed], rows['val_accuracy'].to_numpy()[~failed], marker='o',
                        label=str(option), **_style(i))
        ax.scatter(values[failed], np.zeros(failed.sum()), marker='x', color=line.get_color())
    ax.set_xscale('log')
    grid = sorted({point[key] for point in table['point']})
    ax.set_xticks(grid, [f'{v:g}' for v in grid])
    ax.minorticks_off()
    ax.set_xlabel(key)
    ax.set_ylabel('mean final validation accuracy')
    ax.grid(alpha=0.3)
    _save(fig, path, title, _legend(fig, ax))


def percentile_columns(keys) -> list[str]:
    """The percentile names among `keys` ('p15', 'p2.5': diagnostics.rows writes p{q:g}),
    in increasing order."""
    return sorted((k for k in keys if re.fullmatch(r'p\d+(\.\d+)?', str(k))),
                  key=lambda k: float(k[1:]))


def forward_position(layer: str) -> tuple:
    """Where an activation's input lies in the forward pass: plain blocks (nn/blocks.py)
    name their layers conv1, conv2, ... then fc1, fc2, ...; diagnostics rows are sorted by
    name, which puts act_conv2 after act_fc1."""
    match = re.fullmatch(r'act_(conv|fc)(\d+)', layer.rsplit('/', 1)[-1])
    return (match.group(1) == 'fc', int(match.group(2))) if match else (False, -1)


def last_activation_percentiles(diagnostics: list[dict], runs: pd.DataFrame, compare: str,
                                out_dir: str, title: str) -> tuple[str, str] | None:
    """The percentiles figure (percentiles()) of the last activation in the forward pass
    whose input has logged percentiles, from the runs' diagnostics rows: (layer, file name),
    or None when no row has percentiles."""
    rows = pd.DataFrame([r for r in diagnostics if percentile_columns(r)])
    if rows.empty:
        return None
    layer = max(rows['layer'], key=forward_position)
    name = file_name('percentiles', title, layer)
    if compare not in rows:  # the compared key does not vary here
        rows[compare] = runs[compare].iloc[0]
    percentiles(rows[rows['layer'] == layer], compare, os.path.join(out_dir, name),
                f'{title}; input of {layer}')
    return layer, name


def percentiles(rows: pd.DataFrame, compare: str, path: str, title: str) -> None:
    """One panel per compared value: the logged percentiles of an activation's input against
    steps (mean over seeds), as Ioffe & Szegedy's Figure 1 (b, c) draws them."""
    options = sorted(rows[compare].unique(), key=str)
    fig, axes = plt.subplots(1, len(options), figsize=(4 * len(options), 3.4), squeeze=False,
                             sharey=True)
    columns = percentile_columns(rows.columns)
    for ax, option in zip(axes[0], options):
        mean = rows[rows[compare] == option].groupby('step')[columns].mean()
        for column in columns:
            ax.plot(mean.index, mean[column].to_numpy(), label=f'{column[1:]}th percentile')
        ax.set_title(f'{compare.split(".")[-1]}={option}', fontsize=9)
        ax.set_xlabel('step')
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('input of the activation')
    axes[0][0].legend(fontsize=8)
    _save(fig, path, title)
