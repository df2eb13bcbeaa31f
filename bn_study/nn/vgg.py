"""A VGG-style plain CNN (Simonyan & Zisserman 2015) for 28x28 and 32x32 inputs."""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from bn_study.nn import catalog, checks, placement
from bn_study.nn.blocks import output_layer, plain_block
from bn_study.nn.norms import NormFactory


class VGG(nn.Module):
    """VGG-11/13/16/19: five stages of 3x3 convs, each stage ending in a 2x2 max-pool.

    Stage widths are width x (1, 2, 4, 8, 8) (64 gives the paper's 64..512). Convs are numbered
    conv1..convN through the network; the classifier is fc1.. over `hidden_features`, then the
    logits layer. The norm goes in each block where `bn_position` says, as in SimpleCNN.
    """
    norm: NormFactory
    bn_position: str = 'before_act'
    bn_on_output: bool = False
    depth: int = 11
    width: int = 64
    hidden_features: Sequence[int] = ()
    num_classes: int = 10
    dtype: Any = jnp.float32

    def __post_init__(self):
        checks.check_family('vgg', self)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool):
        """Maps images [batch, H, W, C] to float32 logits; `train` selects batch statistics."""
        x = x.astype(self.dtype)
        ops = placement.layer_ops('vgg', checks.module_settings(self), self.bn_position,
                                  self.bn_on_output)
        block = functools.partial(plain_block, self, norm=self.norm, activation=nn.relu,
                                  train=train)
        index = 0
        for convs, multiple in zip(catalog.VGG_DEPTHS[self.depth], (1, 2, 4, 8, 8)):
            for _ in range(convs):  # the stage's last conv is pooled (its ops say so)
                index += 1
                conv = functools.partial(nn.Conv, self.width * multiple, (3, 3),
                                         padding='SAME', dtype=self.dtype)
                x = block(x, f'conv{index}', conv, ops=ops[f'conv{index}'])
        x = x.reshape((x.shape[0], -1))
        for i, features in enumerate(self.hidden_features, start=1):
            x = block(x, f'fc{i}', functools.partial(nn.Dense, features, dtype=self.dtype),
                      ops=ops[f'fc{i}'])
        out = f'fc{len(self.hidden_features) + 1}'
        return output_layer(self, x, out, self.num_classes, self.norm, 'norm' in ops[out],
                            self.dtype, train)
