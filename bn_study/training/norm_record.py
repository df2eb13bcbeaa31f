"""What a run's norm layers computed their statistics over, for its summary record."""

import ml_collections


def describe(config: ml_collections.ConfigDict, has_norm_layers: bool, num_devices: int) -> dict:
    """What a run's norm layers computed statistics over, for its summary record."""
    norm = config.norm
    if not has_norm_layers or norm.kind == 'none':
        return {'kind': 'none', 'scope': 'no_norm_layers', 'num_devices': num_devices}
    common = {'kind': norm.kind, 'num_devices': num_devices, 'epsilon': norm.epsilon,
              'use_scale': norm.use_scale, 'use_bias': norm.use_bias,
              'zero_init_last_scale': norm.zero_init_last_scale}
    if norm.kind != 'batch':
        groups = {'layer': 1, 'group': norm.num_groups, 'instance': 'one per channel'}
        return {**common, 'scope': 'per_example', 'examples_per_statistic': 1,
                'num_groups': groups[norm.kind]}
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
