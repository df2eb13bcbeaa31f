"""Sweeps declared as data: override dicts from a config file's get_sweep(), expanded into
named runs, checked as a whole before anything runs, and each run's state on disk.

A study file reads like its design:

    def get_sweep(arg=None):
        return declare.product({'model.bn_position': nn_catalog.BN_POSITIONS},
                             declare.zipped({'batch_size': (32, 128),
                                           'optimizer.learning_rate': (0.0125, 0.05)}),
                             {'seed': range(3)})
"""

import copy
import dataclasses
import difflib
import itertools
import json
import os
import re

import ml_collections
from etils import epath

from bn_study import errors, records, schema

# The longest run name: a directory name must stay under the filesystem's 255 bytes.
MAX_NAME_LENGTH = 200


def _as_overrides(part) -> list[dict]:
    """A part of a product: {key: values} (every combination) or a list of override dicts."""
    if isinstance(part, dict):
        keys = list(part)
        return [dict(zip(keys, values)) for values in itertools.product(
            *(tuple(v) for v in part.values()))]
    return [dict(o) for o in part]


def product(*parts) -> list[dict]:
    """Every combination across parts, later parts varying fastest. Each part is a dict of
    key -> values (itself a product over its keys) or a list of override dicts (e.g. zipped)."""
    combined = [{}]
    for part in parts:
        expanded = _as_overrides(part)
        for overrides in expanded:
            shared = sorted(set(overrides) & set(combined[0]))
            if shared:
                raise errors.ConfigError(f'sweep key {shared[0]!r} appears in two parts of '
                                          'one product')
        combined = [{**left, **right} for left in combined for right in expanded]
    return combined


def zipped(axes: dict) -> list[dict]:
    """Values taken together, position by position: {'a': (1, 2), 'b': (3, 4)} gives
    [{'a': 1, 'b': 3}, {'a': 2, 'b': 4}]. Every key needs as many values."""
    columns = {key: tuple(values) for key, values in axes.items()}
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise errors.ConfigError(f'zipped sweep keys need equally many values; got {lengths}')
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _name_part(value) -> str:
    if isinstance(value, (tuple, list)):
        return ','.join(_name_part(v) for v in value) or 'empty'
    return re.sub(r'[^A-Za-z0-9.,_+-]', '_', str(value))


def run_name(overrides: dict) -> str:
    """A readable, stable directory name: 'model.bn_position-after_act__seed-0'."""
    if not overrides:
        return 'base'
    return '__'.join(f'{key}-{_name_part(value)}' for key, value in overrides.items())


def nearest_names(name: str, names: list[str]) -> list[str]:
    """Up to three of `names` spelled most like `name` (for an unknown --run)."""
    return difflib.get_close_matches(name, names, n=3, cutoff=0.0)


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict):
    """A copy of config with dotted-path overrides; an unknown key is a ConfigError."""
    config = copy.deepcopy(config)
    for path, value in overrides.items():
        problem = schema.unknown_key(config, path)
        if problem:
            raise errors.ConfigError(f'sweep key {path!r}: {problem}')
        *parents, last = path.split('.')
        node = config
        for key in parents:
            node = node[key]
        with node.unlocked():
            node[last] = tuple(value) if isinstance(value, (list, range)) else value
    return config


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    overrides: dict
    config: ml_collections.ConfigDict
    workdir: str


def expand(base: ml_collections.ConfigDict, sweep: list[dict], sweep_dir: str) -> list[Run]:
    """Named, validated runs; every problem is found here, before anything runs or is
    written (unknown keys, bad values, an empty sweep, two runs on one workdir)."""
    if not sweep:
        raise errors.ConfigError('the sweep is empty: get_sweep returned no runs')
    runs, owners = [], {}
    for overrides in sweep:
        name = run_name(overrides)
        if name in owners:
            raise errors.ConfigError(
                f'two runs would share the workdir {name!r}: {owners[name]} and {overrides}; '
                'make the overrides distinct')
        if len(name) > MAX_NAME_LENGTH:
            raise errors.ConfigError(f'run name {name[:60]}... is {len(name)} characters; '
                                      f'sweep fewer keys (at most {MAX_NAME_LENGTH})')
        owners[name] = overrides
        config = apply_overrides(base, overrides)
        schema.validate(config)
        runs.append(Run(name, dict(overrides), config, os.fspath(epath.Path(sweep_dir) / name)))
    return runs


def select(runs: list[Run], names: list[str]) -> list[Run]:
    """The named runs of a sweep (a worker's share); an unknown name is a ConfigError."""
    by_name = {run.name: run for run in runs}
    for name in names:
        if name not in by_name:
            nearest = nearest_names(name, list(by_name))
            raise errors.ConfigError(f'--run={name} is not a run of this sweep; nearest: '
                                      f'{", ".join(nearest)}')
    return [by_name[name] for name in names]


def check_sweep_dir(runs: list[Run], sweep_dir: str) -> None:
    """Refuses a sweep dir holding runs of the same names made with other configs: skipping
    or resuming them would mix old results into the new sweep."""
    conflicts = []
    for run in runs:
        saved = epath.Path(run.workdir) / records.CONFIG_FILE
        if saved.exists():
            differences = records.config_differences(json.loads(saved.read_text()), run.config)
            if differences:
                conflicts.append(f'{run.name} (differs in: {", ".join(differences)})')
    if conflicts:
        more = f' and {len(conflicts) - 1} more' if len(conflicts) > 1 else ''
        raise errors.WorkdirError(
            f'{sweep_dir} holds runs made with a different config: {conflicts[0]}{more}; '
            'use a new --sweep_dir or delete those runs')


# What a sweep does with a run, decided from its workdir alone.
START, RESUME, SKIP = 'start', 'resume', 'skip'


def next_action(run: Run) -> tuple[str, str]:
    """(START | RESUME | SKIP, why), from the run's summary and checkpoints."""
    summary = records.read_summary(run.workdir)
    status = summary['status'] if summary else None
    if status == records.COMPLETE:
        return SKIP, f'complete (test accuracy {summary["final_test_accuracy"]:.4f})'
    if status == records.DIVERGED:
        return SKIP, f'diverged at step {summary["diverged_at_step"]}'
    steps = records.saved_steps(run.workdir)
    after = f' after it failed ({summary["error"]})' if status == records.FAILED else ''
    if steps:
        return RESUME, f'checkpoint at step {steps[-1]}{after}'
    if status == records.FAILED:
        return START, f'again: it failed with no checkpoint ({summary["error"]})'
    if (epath.Path(run.workdir) / records.CONFIG_FILE).exists():
        return START, 'again: an earlier attempt stopped before its first checkpoint'
    return START, 'new'


def seed_groups(runs: list[Run], size: int) -> list[list[Run]]:
    """Runs that differ only in `seed`, in groups of at most `size` (in sweep order), to be
    trained as one vmapped program; size 0 or 1 leaves every run alone."""
    if size <= 1:
        return [[run] for run in runs]
    groups, open_groups = [], {}
    for run in runs:
        key = json.dumps({k: v for k, v in run.overrides.items() if k != 'seed'},
                         sort_keys=True, default=list)
        group = open_groups.get(key)
        if group is None or len(group) == size:
            group = open_groups[key] = []
            groups.append(group)
        group.append(run)
    return groups


def describe_plan(plan: list[tuple[Run, str, str]]) -> list[str]:
    """--dry_run's lines: each run's action and why, then the counts."""
    counts = {action: sum(1 for _, a, _ in plan if a == action)
              for action in (START, RESUME, SKIP)}
    return [f'{action:6s} {run.name}: {reason}' for run, action, reason in plan] + [
        '', f'would {START} {counts[START]}, {RESUME} {counts[RESUME]}, {SKIP} {counts[SKIP]} '
            f'of {len(plan)} runs; nothing was written']
