"""The config schema: every closed-set setting by its dotted path, and the one place a
config is checked against them."""

import difflib
import os

import ml_collections

from bn_study.errors import ConfigError, check_choice
from bn_study.nn.catalog import (
    DTYPES,
    MODELS,
    NORM_KINDS,
    RESIDUAL_UNITS,
    STATS_SCOPES,
)
from bn_study.nn.checks import check_position, family_settings, resnet_units_per_stage
from bn_study.training.catalog import (
    AUGMENTATIONS,
    EVAL_STATS,
    OPTIMIZERS,
    SCHEDULES,
    WEIGHT_DECAY_ON,
)

# The closed-set settings of a config outside the families' own, by their dotted paths;
# each family's own are in its catalog entry (config_choices() gives them all).
CONFIG_CHOICES = {
    'model.name': MODELS,
    'model.dtype': DTYPES,
    'norm.kind': NORM_KINDS,
    'norm.stats_scope': STATS_SCOPES,
    'data.augment': AUGMENTATIONS,
    'optimizer.name': OPTIMIZERS,
    'schedule.name': SCHEDULES,
    'optimizer.weight_decay_on': WEIGHT_DECAY_ON,
}


def config_choices(config: ml_collections.ConfigDict) -> dict:
    """Every closed-set setting of `config` by its dotted path: CONFIG_CHOICES, then each
    family's own settings where config.model has the family's section."""
    choices = dict(CONFIG_CHOICES)
    for name, family in MODELS.items():
        if name in config.model:
            choices.update({f'model.{name}.{setting}': valid
                            for setting, valid in family.choices.items()})
    return choices


def _lookup(config: ml_collections.ConfigDict, path: str):
    node = config
    for key in path.split('.'):
        node = node[key]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every closed-set value and every cross-field constraint of a training config."""
    family_settings(config.model)
    for path, valid in config_choices(config).items():
        check_choice(path, _lookup(config, path), valid)
    check_position(config.model.name, dict(config.model[config.model.name]),
                   config.model.bn_position, config.model.bn_on_output)
    if config.model.name == 'resnet':
        resnet_units_per_stage(config.model.resnet.depth, config.model.resnet.block)
    eval_stats = tuple(config.eval.stats)
    for kind in eval_stats:
        check_choice('eval.stats', kind, EVAL_STATS)
    if not eval_stats or len(set(eval_stats)) != len(eval_stats):
        raise ConfigError(f'config.eval.stats={eval_stats!r} must list one or more distinct '
                          f'values of: {", ".join(EVAL_STATS)}')
    positive = ('batch_size', 'eval.batch_size', 'num_epochs', 'optimizer.learning_rate',
                'optimizer.agc_eps',
                'norm.epsilon', 'norm.num_groups', 'norm.ghost_batch_size',
                'eval.precise_bn_examples', 'data.train_shards', 'checkpoint.keep')
    for path in positive:
        if not _lookup(config, path) > 0:
            raise ConfigError(f'config.{path}={_lookup(config, path)!r} must be positive')
    if not 0.0 < config.data.validation_fraction < 1.0:
        raise ConfigError(f'config.data.validation_fraction={config.data.validation_fraction!r} '
                          'must lie strictly between 0 and 1: every run holds out a '
                          'validation split, where choices are made')
    if not 0.0 <= config.norm.momentum < 1.0:
        raise ConfigError(f'config.norm.momentum={config.norm.momentum!r} must be in [0, 1)')
    bad = [q for q in config.diagnostics.percentiles
           if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 100]
    if bad:
        raise ConfigError(f'config.diagnostics.percentiles={tuple(config.diagnostics.percentiles)}'
                          f' has {bad[0]!r}; percentiles lie in 0..100, e.g. (15, 50, 85)')
    for path in ('seed', 'cpu_devices', 'num_devices', 'diagnostics.every_steps',
                 'optimizer.agc_clipping',
                 'progress_every_steps', 'steps_in_flight', 'data.crop_padding',
                 'checkpoint.every_steps'):
        if _lookup(config, path) < 0:
            raise ConfigError(f'config.{path}={_lookup(config, path)!r} must be 0 or more')
    if config.norm.zero_init_last_scale:
        units = [name for name, unit in RESIDUAL_UNITS.items() if unit.ends_on_norm]
        if config.model.name != 'resnet' or config.model.bn_position not in units:
            raise ConfigError(
                'config.norm.zero_init_last_scale=True needs a residual branch that ends on a '
                f'norm; model {config.model.name} with bn_position '
                f'{config.model.bn_position!r} has none (choose model resnet with one of: '
                f'{", ".join(units)}; or set it False)')
        if NORM_KINDS[config.norm.kind].statistics == 'none' or not config.norm.use_scale:
            without = [name for name, kind in NORM_KINDS.items() if kind.statistics == 'none']
            raise ConfigError('config.norm.zero_init_last_scale=True needs a norm kind other '
                              f'than {" or ".join(without)} and config.norm.use_scale=True: '
                              'no scale to zero')
    boundaries = tuple(config.schedule.step_boundaries_epochs)
    warmup, epochs = config.schedule.warmup_epochs, config.num_epochs
    strictly_increasing = all(a < b for a, b in zip(boundaries, boundaries[1:]))
    if not strictly_increasing or any(not warmup < b < epochs for b in boundaries):
        raise ConfigError(
            f'config.schedule.step_boundaries_epochs={boundaries!r} must be strictly increasing '
            f'and each after the warm-up ({warmup}) and before the last epoch ({epochs})')


def check_batch_split(batch_size: int, num_devices: int, what: str = 'batch_size') -> int:
    """Returns the per-device batch, or raises ConfigError if the batch does not split evenly."""
    if batch_size % num_devices:
        raise ConfigError(
            f'config.{what}={batch_size} does not split evenly over {num_devices} devices; '
            f'choose a multiple of {num_devices}')
    return batch_size // num_devices


def check_ghost_batch(norm_config: ml_collections.ConfigDict, per_device_batch: int) -> None:
    """Ghost batches must tile each device's slice exactly."""
    if (NORM_KINDS[norm_config.kind].statistics == 'batch'
            and norm_config.stats_scope == 'ghost'):
        if per_device_batch % norm_config.ghost_batch_size:
            divisors = [d for d in range(1, per_device_batch + 1) if per_device_batch % d == 0]
            raise ConfigError(
                f'config.norm.ghost_batch_size={norm_config.ghost_batch_size} does not divide '
                f'the per-device batch of {per_device_batch}; choose one of: '
                f'{", ".join(map(str, divisors))}')


def _leaf_paths(config, prefix: str = '') -> list[str]:
    paths = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            paths += _leaf_paths(value, f'{prefix}{key}.')
        else:
            paths.append(f'{prefix}{key}')
    return paths


def _nearest_keys(config, path: str) -> list[str]:
    """Up to three valid dotted keys whose last part is spelled most like the path's: by
    similarity, plus a bonus per leading character in common (typos tend to come late),
    those under the same parent first among equals."""
    parent, _, last = path.rpartition('.')
    def score(candidate):
        candidate_parent, _, candidate_last = candidate.rpartition('.')
        prefix = len(os.path.commonprefix([last, candidate_last]))
        return (difflib.SequenceMatcher(None, last, candidate_last).ratio() + 0.1 * prefix,
                candidate_parent == parent)
    ranked = sorted(_leaf_paths(config), key=score, reverse=True)
    return [p for p in ranked[:3] if score(p)[0] >= 0.5]


def unknown_key(config: ml_collections.ConfigDict, path: str) -> str | None:
    """None if the dotted path exists in config, else which key is missing and the nearest
    valid ones."""
    node, keys = config, path.split('.')
    for i, key in enumerate(keys):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            where = '.'.join(['config', *keys[:i]])
            nearest = _nearest_keys(config, path)
            hint = f'nearest: {", ".join(nearest)}' if nearest else (
                f'valid keys: {", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(none)"}')
            return f'{where} has no key {key!r}; {hint}'
        node = node[key]
    return None
