"""The BN paper's MNIST network (Ioffe & Szegedy 2015, 4.1): 3 hidden layers of 100 sigmoids."""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from bn_study.nn import catalog, checks, placement
from bn_study.nn.blocks import output_layer, plain_block
from bn_study.nn.norms import NormFactory


class MLP(nn.Module):
    """Dense layers fc1..fcK over `hidden_features`, then the logits layer fc(K+1)."""
    norm: NormFactory
    bn_position: str = 'before_act'
    bn_on_output: bool = False
    hidden_features: Sequence[int] = (100, 100, 100)
    activation: str = 'sigmoid'
    # 0: LeCun normal (std 1/sqrt(fan_in)); > 0: N(0, init_stddev^2) for every kernel, the
    # paper's "small random Gaussian values".
    init_stddev: float = 0.0
    num_classes: int = 10
    dtype: Any = jnp.float32

    def __post_init__(self):
        checks.check_family('mlp', self)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool):
        """Maps images [batch, ...] to float32 logits; `train` selects batch statistics."""
        init = (nn.initializers.normal(self.init_stddev) if self.init_stddev > 0
                else nn.initializers.lecun_normal())
        activation = catalog.resolve(catalog.ACTIVATIONS[self.activation])
        x = x.astype(self.dtype).reshape((x.shape[0], -1))
        ops = placement.layer_ops('mlp', checks.module_settings(self), self.bn_position,
                                  self.bn_on_output)
        for i, features in enumerate(self.hidden_features, start=1):
            dense = functools.partial(nn.Dense, features, kernel_init=init, dtype=self.dtype)
            x = plain_block(self, x, f'fc{i}', dense, self.norm, ops[f'fc{i}'], activation,
                            train=train)
        out = f'fc{len(self.hidden_features) + 1}'
        return output_layer(self, x, out, self.num_classes, self.norm, 'norm' in ops[out],
                            self.dtype, train, kernel_init=init)
