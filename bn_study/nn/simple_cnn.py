"""The seed question's network: Conv1-ReLU1-Pool1-Conv2-ReLU2-Pool2-FC1-FC2, norm where told."""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from bn_study.nn import checks, placement
from bn_study.nn.blocks import output_layer, plain_block
from bn_study.nn.norms import NormFactory


class SimpleCNN(nn.Module):
    """The seed CNN. Layers are conv1, conv2, fc1, fc2; block X's ops are tagged norm_X,
    act_X, pool_X, so parameter trees and traces compare across placements and norm kinds.
    `bn_position` is a uniform position, a preset or one position per layer (placement.py)."""
    norm: NormFactory  # norms.make_norm(config.norm, dtype): built once, called per block
    bn_position: str = 'before_act'
    bn_on_output: bool = False
    conv_features: Sequence[int] = (32, 64)
    hidden_features: int = 256
    num_classes: int = 10
    dtype: Any = jnp.float32

    def __post_init__(self):
        checks.check_family('simple_cnn', self)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool):
        """Maps images [batch, H, W, C] to float32 logits [batch, num_classes].

        `train` selects the norms' batch statistics; the model has no dropout.
        """
        x = x.astype(self.dtype)
        ops = placement.layer_ops('simple_cnn', checks.module_settings(self), self.bn_position,
                                  self.bn_on_output)
        block = functools.partial(plain_block, self, norm=self.norm, activation=nn.relu,
                                  train=train)
        for i, features in enumerate(self.conv_features, start=1):
            conv = functools.partial(nn.Conv, features, (3, 3), padding='SAME', dtype=self.dtype)
            x = block(x, f'conv{i}', conv, ops=ops[f'conv{i}'])
        x = x.reshape((x.shape[0], -1))
        dense = functools.partial(nn.Dense, self.hidden_features, dtype=self.dtype)
        x = block(x, 'fc1', dense, ops=ops['fc1'])
        return output_layer(self, x, 'fc2', self.num_classes, self.norm, 'norm' in ops['fc2'],
                            self.dtype, train)
