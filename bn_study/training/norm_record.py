"""What a run's norm layers computed their statistics over, for its summary record."""

import ml_collections

from bn_study.nn import catalog as nn_catalog


def describe(config: ml_collections.ConfigDict, has_norm_layers: bool, num_devices: int) -> dict:
    """What a run's norm layers computed statistics over, for its summary record; the norm
    kind's catalog entry says which examples its statistics pool."""
    norm = config.norm
    kind = None if not has_norm_layers else nn_catalog.NORM_KINDS[norm.kind]
    if kind is None or kind.statistics == 'none':
        return {'kind': 'none', 'scope': 'no_norm_layers', 'num_devices': num_devices}
    common = {'kind': norm.kind, 'num_devices': num_devices, 'epsilon': norm.epsilon,
              'use_scale': norm.use_scale, 'use_bias': norm.use_bias,
              'zero_init_last_scale': norm.zero_init_last_scale}
    if kind.statistics == 'per_example':
        record = {**common, 'scope': 'per_example', 'examples_per_statistic': 1}
        if kind.groups is not None:
            record['num_groups'] = (norm.num_groups if kind.groups == nn_catalog.GROUPS_FROM_CONFIG
                                    else kind.groups)
        return record
    examples = {'global': config.batch_size,
                'per_device': config.batch_size // num_devices,
                'ghost': norm.ghost_batch_size}[norm.stats_scope]
    eval_stats = {'ema': {'momentum': norm.momentum},
                  'precise': {'examples': precise_bn_batch_count(config) * config.batch_size},
                  'batch': {'examples_per_statistic': examples}}
    return {**common, 'scope': norm.stats_scope, 'examples_per_statistic': examples,
            'momentum': norm.momentum,
            'eval_stats': {k: eval_stats[k] for k in config.eval.stats}}


def precise_bn_batch_count(config: ml_collections.ConfigDict) -> int:
    """Training batches PreciseBN averages over: enough to cover eval.precise_bn_examples."""
    return -(-config.eval.precise_bn_examples // config.batch_size)
