"""CIFAR-style ResNets (He et al. 2015, 2016) with the residual units of Identity Mappings.

`bn_position` names the residual unit; its entry in catalog.RESIDUAL_UNITS spells out where
its norms and ReLUs go, and `block` names the convs of its branch (catalog.RESNET_BLOCKS).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bn_study.nn import catalog, checks
from bn_study.nn.blocks import output_layer, record
from bn_study.nn.norms import NormFactory


def _conv(features, kernel, strides, use_bias, dtype, name):
    # Explicit symmetric padding: with SAME, a stride-2 3x3 conv on an even input pads only
    # after, centring output i on input 2i+1, one pixel off the strided shortcut's 2i.
    return nn.Conv(features, (kernel, kernel), strides=strides, padding=kernel // 2,
                   use_bias=use_bias, dtype=dtype, name=name)


def _bias_cancelled(ops: list, position: int, norm: NormFactory) -> bool:
    """Whether a norm removes the bias of the conv at ops[position]: it follows directly, or
    right after the addition (a per-channel constant survives the sum)."""
    following = ops[position + 1:position + 3]
    return norm.cancels_preceding_bias and (following[:1] == ['norm']
                                            or following == ['add', 'norm'])


def _sequence(module, x, ops, norm, train, conv=None, name=''):
    """Applies a run of conv/norm/act ops; norms and acts take the conv's number."""
    for op in ops:
        if op == 'conv':
            x = record(module, f'conv{name}', conv(x))
        elif op == 'norm':
            x = record(module, f'norm{name}', norm(f'norm{name}')(x, train))
        elif op == 'act':
            x = record(module, f'act{name}', nn.relu(x))
    return x


class ResidualUnit(nn.Module):
    """One residual unit: a branch of the block's convs (2 basic, 3 bottleneck) plus a
    shortcut."""
    norm: NormFactory
    unit: str  # a key of catalog.RESIDUAL_UNITS
    features: int  # the branch's inner width; the output is the block's expansion wider
    strides: int
    block: str  # a key of catalog.RESNET_BLOCKS
    shortcut: str  # catalog.RESNET_SHORTCUTS, used where the shape changes
    # Pre-activation units whose shortcut changes shape, and the network's first unit,
    # pre-activate before the split so the shortcut sees the activated input too, as in
    # He et al.'s released code ('both_preact').
    preactivate_shortcut: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        block = catalog.RESNET_BLOCKS[self.block]
        # (kernel, features, strides) of each conv: the first 3x3 one strides, the last one
        # widens the output by the block's expansion.
        convs = [(kernel, self.features * (block.expansion if i == len(block.kernels) - 1 else 1),
                  self.strides if i == block.kernels.index(3) else 1)
                 for i, kernel in enumerate(block.kernels)]
        unit = catalog.RESIDUAL_UNITS[self.unit]
        middle, last, after = unit.middle, unit.last, unit.after
        groups = [middle] * (len(convs) - 1) + [last]
        flat = [op for group in groups for op in group] + list(after)
        # Units whose branch ends on a norm (ends_on_norm): that one may start at scale 0.
        last_of_branch = len(flat) - len(after) - 1
        shortcut_input = x
        position = 0
        for number, (group, (kernel, features, strides)) in enumerate(zip(groups, convs), 1):
            ops = list(group)
            if number == 1 and self.preactivate_shortcut and ops[0] != 'conv':
                lead = ops[:ops.index('conv')]  # the pre-activation, moved before the split
                x = shortcut_input = _sequence(self, x, lead, self.norm, train, name='1')
                position += len(lead)
                ops = ops[len(lead):]
            for op in ops:
                if op == 'conv':
                    layer = _conv(features, kernel, strides,
                                  not _bias_cancelled(flat, position, self.norm), self.dtype,
                                  f'conv{number}')
                    x = record(self, f'conv{number}', layer(x))
                elif op == 'norm':
                    norm = self.norm(f'norm{number}',
                                     last_in_residual_branch=position == last_of_branch)
                    x = record(self, f'norm{number}', norm(x, train))
                else:
                    x = record(self, f'act{number}', nn.relu(x))
                position += 1
        x = record(self, 'add', x + self._shortcut(shortcut_input, x.shape[-1], train))
        return _sequence(self, x, after[1:], self.norm, train, name='_add')

    def _shortcut(self, x, features, train):
        if x.shape[-1] == features and self.strides == 1:
            return x
        if self.shortcut == 'projection':
            x = record(self, 'projection', _conv(features, 1, self.strides, False, self.dtype,
                                                 'projection')(x))
            if catalog.RESIDUAL_UNITS[self.unit].normalized_projection:
                x = record(self, 'norm_projection', self.norm('norm_projection')(x, train))
            return x
        x = x[:, ::self.strides, ::self.strides, :]
        return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


class ResNet(nn.Module):
    """Three stages of units at width x (1, 2, 4), stride 2 between stages; global average
    pool; the logits layer `fc`. Depth 6n+2 (basic units) or 9n+2 (bottleneck units)."""
    norm: NormFactory
    bn_position: str = 'original'
    bn_on_output: bool = False
    depth: int = 20
    block: str = 'basic'
    width: int = 16
    shortcut: str = 'projection'
    num_classes: int = 10
    dtype: Any = jnp.float32

    def __post_init__(self):
        checks.check_family('resnet', self)
        checks.resnet_units_per_stage(self.depth, self.block)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool):
        """Maps images [batch, H, W, C] to float32 logits; `train` selects batch statistics."""
        unit = catalog.RESIDUAL_UNITS[self.bn_position]
        units_per_stage = checks.resnet_units_per_stage(self.depth, self.block)
        # The first unit always pre-activates before the split, so a bare stem conv feeds
        # that unit's leading op only.
        after_stem = list(unit.stem) + [unit.middle[0]]
        stem_conv = _conv(self.width, 3, 1, not _bias_cancelled(after_stem, 0, self.norm),
                          self.dtype, 'conv_stem')
        x = _sequence(self, x.astype(self.dtype), unit.stem, self.norm, train, stem_conv, '_stem')
        expansion = catalog.RESNET_BLOCKS[self.block].expansion
        for stage in range(3):
            for i in range(units_per_stage):
                strides = 2 if stage > 0 and i == 0 else 1
                features = self.width * 2 ** stage
                changes_shape = strides != 1 or x.shape[-1] != expansion * features
                x = ResidualUnit(
                    self.norm, self.bn_position, features, strides, self.block, self.shortcut,
                    preactivate_shortcut=changes_shape or (stage == 0 and i == 0),
                    dtype=self.dtype, name=f'stage{stage + 1}_unit{i + 1}')(x, train)
        x = _sequence(self, x, unit.head, self.norm, train, name='_head')
        x = record(self, 'pool_head', x.mean(axis=(1, 2)))
        return output_layer(self, x, 'fc', self.num_classes, self.norm, self.bn_on_output,
                            self.dtype, train)
