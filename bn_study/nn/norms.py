"""The norm layers and the one norm factory: the kind is a config value, and its entry in
catalog.NORM_KINDS names the function here that builds its layer.

A block asks for a norm where `bn_position` puts one, `norm(name)(x, train)`, and never
knows which kind it got. When a caller makes the collection mutable, every norm layer sows
the per-channel mean and second moment of its input and output into 'diagnostics', and
BatchNorm sows its batch moments into 'batch_moments' for PreciseBN.
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from bn_study import errors
from bn_study.errors import ConfigError
from bn_study.nn import catalog

# pmap axis over which global batch statistics are pooled; train.py maps over the same name.
BATCH_AXIS = 'batch'


def _moments(x, axes):
    """E[x] and E[x^2] over `axes`, in at least float32 whatever the compute dtype."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return x.mean(axes), jnp.square(x).mean(axes)


def sow_signal(module: nn.Module, x, y) -> None:
    """Per-channel E[x] and E[x^2] of a norm's input and output; diagnostics.rows turns them
    into whole-tensor and per-channel variances after pooling over devices."""
    # Computed only when asked for: even unused, these reductions cost the training step
    # about 5% of its time (measured on the seed CNN).
    if not module.is_mutable_collection('diagnostics'):
        return
    all_but_channels = tuple(range(x.ndim - 1))
    for tag, value in (('input', x), ('output', y)):
        mean, mean_sq = _moments(value, all_but_channels)
        module.sow('diagnostics', f'{tag}_mean', mean)
        module.sow('diagnostics', f'{tag}_mean_sq', mean_sq)


def _scale_and_shift(module, mean, var, epsilon, use_scale, use_bias, zero_scale):
    """Per-channel multiplier and offset so that y = x * mul + shift: the normalization and
    the affine parameters folded into one multiply-add per element."""
    features = mean.shape[-1]
    mul = jax.lax.rsqrt(var + epsilon)
    if use_scale:
        init = nn.initializers.zeros if zero_scale else nn.initializers.ones
        mul = mul * module.param('scale', init, (features,), jnp.float32)
    shift = -mean * mul
    if use_bias:
        shift = shift + module.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    return mul, shift


class BatchNorm(nn.Module):
    """BatchNorm whose normalization batch is explicit: global, per device, or ghost batches.

    Variables match flax's nn.BatchNorm: params scale, bias; batch_stats mean, var (biased).
    """
    stats_scope: str = 'global'  # catalog.STATS_SCOPES
    ghost_batch_size: int = 32
    momentum: float = 0.9
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    zero_scale: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        features = x.shape[-1]
        running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
        running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
        if train:
            # Group the batch into normalization batches: [groups, examples, ..., C].
            if self.stats_scope == 'ghost':
                if x.shape[0] % self.ghost_batch_size:
                    raise ConfigError(
                        f'config.norm.ghost_batch_size={self.ghost_batch_size} does not divide '
                        f'the batch of {x.shape[0]} reaching {self.name}')
                groups = x.reshape(-1, self.ghost_batch_size, *x.shape[1:])
                mean, mean_sq = _moments(groups, tuple(range(1, groups.ndim - 1)))
            else:  # one group; reducing x itself keeps XLA's layout simple
                groups = x[None]
                mean, mean_sq = (m[None] for m in _moments(x, tuple(range(x.ndim - 1))))
            if self.stats_scope == 'global':
                # Pool E[x] and E[x^2] (not variances): the exact variance of the global batch.
                mean, mean_sq = jax.lax.pmean((mean, mean_sq), BATCH_AXIS)
            var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
            if self.is_mutable_collection('batch_moments'):  # PreciseBN asks for them
                self.sow('batch_moments', 'mean', mean.mean(0))
                self.sow('batch_moments', 'mean_sq', mean_sq.mean(0))
            if not self.is_initializing():
                m = self.momentum
                running_mean.value = m * running_mean.value + (1 - m) * mean.mean(0)
                running_var.value = m * running_var.value + (1 - m) * var.mean(0)
            broadcast = (slice(None),) + (None,) * (groups.ndim - 2) + (slice(None),)
            mul, shift = _scale_and_shift(self, mean, var, self.epsilon, self.use_scale,
                                          self.use_bias, self.zero_scale)
            y = (groups * mul[broadcast] + shift[broadcast]).reshape(x.shape)
        else:
            mul, shift = _scale_and_shift(self, running_mean.value, running_var.value,
                                          self.epsilon, self.use_scale, self.use_bias,
                                          self.zero_scale)
            y = x * mul + shift
        y = y.astype(self.dtype)
        sow_signal(self, x, y)
        return y


class GroupNorm(nn.Module):
    """Per-example normalization over groups of channels and all positions (Wu & He 2018).

    LayerNorm is one group, InstanceNorm one channel per group; `kind` only names the
    configured norm in error messages.
    """
    kind: str = 'group'
    num_groups: int = 32  # 0: one group per channel (instance)
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    zero_scale: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        del train  # the statistics are each example's own, in training and at test time
        channels = x.shape[-1]
        groups = self.num_groups or channels
        if channels % groups:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0]
            raise ConfigError(
                f'config.norm.num_groups={groups} does not divide the {channels} channels of '
                f'{self.name}; choose one of: {", ".join(map(str, divisors))}')
        positions = math.prod(x.shape[1:-1])
        if positions * (channels // groups) == 1:
            raise ConfigError(
                f'config.norm.kind={self.kind} would normalize single values of the dense '
                f'layer {self.name} to zero; choose {_kinds_for_dense_layers()} for models '
                'that normalize dense layers')
        grouped = x.reshape(*x.shape[:-1], groups, channels // groups)
        axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
        mean, mean_sq = _moments(grouped, axes)
        var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
        # Each group's statistics, repeated for its channels: [batch, 1, ..., 1, channels].
        per_channel = lambda s: jnp.broadcast_to(
            jnp.expand_dims(s, axes), (x.shape[0],) + (1,) * (x.ndim - 2) + grouped.shape[-2:]
        ).reshape(x.shape[0], *(1,) * (x.ndim - 2), channels)
        mul, shift = _scale_and_shift(self, per_channel(mean), per_channel(var), self.epsilon,
                                      self.use_scale, self.use_bias, self.zero_scale)
        y = (x * mul + shift).astype(self.dtype)
        sow_signal(self, x, y)
        return y


def _kinds_for_dense_layers() -> str:
    """The norm kinds whose statistics pool more than one value of a dense layer."""
    kinds = [name + (' (with fewer groups)' if kind.groups == catalog.GROUPS_FROM_CONFIG else '')
             for name, kind in catalog.NORM_KINDS.items()
             if kind.statistics != 'none' and kind.groups != catalog.ONE_PER_CHANNEL]
    return ', '.join(kinds[:-1]) + ' or ' + kinds[-1] if len(kinds) > 1 else kinds[0]


class Identity(nn.Module):
    """The `none` kind: a norm slot that does nothing and holds no variables."""

    def __call__(self, x, train: bool):
        del train
        return x


def batch_norm(norm: 'NormFactory', name: str, zero_scale: bool) -> BatchNorm:
    """The `batch` kind: statistics over the examples norm.stats_scope names."""
    return BatchNorm(stats_scope=norm.stats_scope, ghost_batch_size=norm.ghost_batch_size,
                     momentum=norm.momentum, **norm.affine(name, zero_scale))


def group_norm(norm: 'NormFactory', name: str, zero_scale: bool) -> GroupNorm:
    """The `layer`, `group` and `instance` kinds: GroupNorm with the kind's channel groups."""
    groups = catalog.NORM_KINDS[norm.kind].groups
    num_groups = {catalog.GROUPS_FROM_CONFIG: norm.num_groups,
                  catalog.ONE_PER_CHANNEL: 0}.get(groups, groups)
    return GroupNorm(kind=norm.kind, num_groups=num_groups, **norm.affine(name, zero_scale))


def identity(norm: 'NormFactory', name: str, zero_scale: bool) -> Identity:
    """The `none` kind."""
    del norm, zero_scale
    return Identity(name=name)


@dataclasses.dataclass(frozen=True)
class NormFactory:
    """Built once from config.norm; blocks call it as norm(name)(x, train)."""
    kind: str  # a key of catalog.NORM_KINDS, whose entry builds the layers
    stats_scope: str
    ghost_batch_size: int
    num_groups: int
    momentum: float
    epsilon: float
    use_scale: bool
    use_bias: bool
    zero_init_last_scale: bool
    dtype: Any

    def __call__(self, name: str, last_in_residual_branch: bool = False) -> nn.Module:
        """A norm layer; the last one of a residual branch starts at scale 0 if configured."""
        build = catalog.resolve(catalog.NORM_KINDS[self.kind].layer)
        return build(self, name, self.zero_init_last_scale and last_in_residual_branch)

    def affine(self, name: str, zero_scale: bool) -> dict:
        """The fields every normalizing layer takes: epsilon, the affine parameters, the
        compute dtype and its name."""
        return dict(epsilon=self.epsilon, use_scale=self.use_scale, use_bias=self.use_bias,
                    zero_scale=zero_scale, dtype=self.dtype, name=name)

    @property
    def cancels_preceding_bias(self) -> bool:
        """True if a per-channel bias right before this norm is subtracted away by it (the
        kind's catalog entry says)."""
        return catalog.NORM_KINDS[self.kind].cancels_preceding_bias


def make_norm(norm_config: ml_collections.ConfigDict, dtype: Any) -> NormFactory:
    """The norm factory every block of a model shares."""
    errors.check_choice('norm.kind', norm_config.kind, catalog.NORM_KINDS)
    return NormFactory(
        kind=norm_config.kind, stats_scope=norm_config.stats_scope,
        ghost_batch_size=norm_config.ghost_batch_size, num_groups=norm_config.num_groups,
        momentum=norm_config.momentum, epsilon=norm_config.epsilon,
        use_scale=norm_config.use_scale, use_bias=norm_config.use_bias,
        zero_init_last_scale=norm_config.zero_init_last_scale, dtype=dtype)
