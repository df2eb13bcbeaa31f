"""The norm factory: built once from the config, called by each block where `bn_position` says."""

import functools
from typing import Any, Callable

import flax.linen as nn
import ml_collections

NormFactory = Callable[..., nn.Module]

# pmap axis over which global batch statistics are pooled; train.py maps over the same name.
BATCH_AXIS = 'batch'


def make_norm(norm_config: ml_collections.ConfigDict, dtype: Any) -> NormFactory:
    """Returns a BatchNorm factory; blocks call it as norm(use_running_average=..., name=...)."""
    # flax pools statistics as pmean(E[x]) and pmean(E[x^2]) when axis_name is set, which
    # is the correct cross-replica variance (not the mean of per-device variances).
    axis_name = BATCH_AXIS if norm_config.batch_stats == 'global' else None
    return functools.partial(
        nn.BatchNorm,
        momentum=norm_config.momentum,
        epsilon=norm_config.epsilon,
        axis_name=axis_name,
        dtype=dtype,
    )


def describe_batch_stats(model_config: ml_collections.ConfigDict,
                         norm_config: ml_collections.ConfigDict, global_batch: int,
                         num_devices: int) -> dict:
    """What a run's training-time BN statistics were computed over, for its summary record."""
    if model_config.bn_position == 'none' and not model_config.bn_on_output:
        return {'scope': 'no_batch_norm', 'num_devices': num_devices}
    if norm_config.batch_stats == 'global':
        examples = global_batch
    else:
        examples = global_batch // num_devices
    return {'scope': norm_config.batch_stats, 'examples_per_statistic': examples,
            'num_devices': num_devices, 'momentum': norm_config.momentum,
            'epsilon': norm_config.epsilon, 'eval': 'running_average'}
