"""Sweeps: override dicts expanded from a config file, each run in its own sub-workdir."""

import copy
import itertools
import json
import os
import time
from typing import Callable

import ml_collections
from absl import logging

from bn_study import choices, records


def product(axes: dict) -> list[dict]:
    """Every combination of the values of each key, later keys varying fastest."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


def run_name(overrides: dict) -> str:
    """A readable, stable directory name: 'model.bn_position-after_act__seed-0'."""
    return '__'.join(f'{k}-{v}' for k, v in overrides.items()).replace('/', '_')


def unknown_key(config: ml_collections.ConfigDict, path: str) -> str | None:
    """None if the dotted path exists in config, else which key is missing and the valid ones."""
    node, keys = config, path.split('.')
    for i, key in enumerate(keys):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            where = '.'.join(['config', *keys[:i]])
            valid = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(none)'
            return f'{where} has no key {key!r}; valid keys: {valid}'
        node = node[key]
    return None


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict):
    """A copy of config with dotted-path overrides; an unknown key is a ConfigError."""
    config = copy.deepcopy(config)
    for path, value in overrides.items():
        problem = unknown_key(config, path)
        if problem:
            raise choices.ConfigError(f'sweep key {path!r}: {problem}')
        *parents, last = path.split('.')
        node = config
        for key in parents:
            node = node[key]
        with node.unlocked():
            node[last] = value
    return config


def _check_matches_record(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Refuses a sweep dir whose complete run was made with another config: skipping it
    would report old results as new ones."""
    summary = records.read_summary(workdir)
    if summary is None or summary['status'] not in records.FINISHED:
        return  # nothing finished there; the run starts again from scratch
    with open(os.path.join(workdir, records.CONFIG_FILE)) as f:
        stored = json.load(f)
    differing = sorted(_differing_keys(stored, json.loads(config.to_json())))
    if differing:
        raise choices.ConfigError(
            f'{workdir} holds a finished run made with a different config '
            f'(differs in: {", ".join(differing)}); use a new --sweep_dir or delete that run')


def _differing_keys(a: dict, b: dict, prefix: str = '') -> list[str]:
    keys = []
    for key in a.keys() | b.keys():
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += _differing_keys(x, y, f'{prefix}{key}.')
        elif x != y:
            keys.append(f'{prefix}{key}')
    return keys


def run_sweep(config: ml_collections.ConfigDict, sweep: list[dict], sweep_dir: str,
              train_fn: Callable) -> dict:
    """Runs every override not yet complete, one after another; a failing run does not stop
    the rest. Returns counts of runs done, skipped, diverged and failed."""
    if not sweep:
        raise choices.ConfigError('the sweep is empty: get_sweep returned no runs')
    names = [run_name(o) for o in sweep]
    if len(set(names)) != len(names):
        raise choices.ConfigError('two runs of the sweep share a name; make overrides distinct')
    # Build and check every run's config before starting any, so a typo costs nothing.
    configs = [apply_overrides(config, o) for o in sweep]
    for name, run_config in zip(names, configs):
        choices.validate(run_config)
        _check_matches_record(os.path.join(sweep_dir, name), run_config)
    counts = {'ran': 0, 'skipped': 0, 'diverged': 0, 'failed': 0}
    for index, (name, run_config) in enumerate(zip(names, configs), start=1):
        workdir = os.path.join(sweep_dir, name)
        summary = records.read_summary(workdir)
        if summary is not None and summary['status'] in records.FINISHED:
            counts['skipped'] += 1
            logging.info('[%d/%d] %s: %s, skipped', index, len(names), name, summary['status'])
            continue
        start = time.perf_counter()
        try:
            train_fn(run_config, workdir)
        except Exception as e:  # recorded in the run's summary; the sweep goes on
            counts['failed'] += 1
            logging.error('[%d/%d] %s: failed: %s', index, len(names), name, e)
            continue
        summary = records.read_summary(workdir)
        if summary['status'] == records.DIVERGED:
            counts['diverged'] += 1
            logging.warning('[%d/%d] %s: diverged at step %d', index, len(names), name,
                            summary['diverged_at_step'])
            continue
        counts['ran'] += 1
        logging.info('[%d/%d] %s: test accuracy %.4f (%.0f s)', index, len(names), name,
                     summary['final_test_accuracy'], time.perf_counter() - start)
    return counts
