"""The seed question's network: Conv1-ReLU1-Pool1-Conv2-ReLU2-Pool2-FC1-FC2, BN where told."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from bn_study import choices
from bn_study.norms import NormFactory

# The order of operations inside one block for each placement. A dense block has no pool,
# so there `after_pool` puts BN after the activation, the block's last operation.
BLOCK_ORDER = {
    'none': ('layer', 'act', 'pool'),
    'before_act': ('layer', 'norm', 'act', 'pool'),
    'after_act': ('layer', 'act', 'norm', 'pool'),
    'after_pool': ('layer', 'act', 'pool', 'norm'),
}


class SimpleCNN(nn.Module):
    """The seed CNN; every op's output is sown into 'intermediates' under a stable name.

    Names follow the question: conv1, conv2, fc1, fc2 for layers; bn_X, relu_X, pool_X for
    the norm, activation and pool of block X, so parameter trees compare across placements.
    """
    norm: NormFactory  # norms.make_norm(config.norm, dtype): built once, called per block
    bn_position: str = 'before_act'
    bn_on_output: bool = False
    conv_features: Sequence[int] = (32, 64)
    hidden_features: int = 256
    num_classes: int = 10
    dtype: Any = jnp.float32

    def __post_init__(self):
        choices.check_choice('model.bn_position', self.bn_position, choices.BN_POSITIONS)
        super().__post_init__()

    def _block(self, x, block: str, layer_factory, pool: bool, train: bool):
        """Applies layer, act, pool and norm in the order `bn_position` gives."""
        order = BLOCK_ORDER[self.bn_position]
        if not pool:
            order = tuple(op for op in order if op != 'pool')
        # A bias right before BN is redundant: BN's beta replaces it (Ioffe & Szegedy 3.2).
        layer = layer_factory(use_bias=order[1] != 'norm', name=block)
        for op in order:
            if op == 'layer':
                x, tag = layer(x), block
            elif op == 'norm':
                tag = f'bn_{block}'
                x = self.norm(use_running_average=not train, name=tag)(x)
            elif op == 'act':
                x, tag = nn.relu(x), f'relu_{block}'
            else:
                x, tag = nn.max_pool(x, (2, 2), strides=(2, 2)), f'pool_{block}'
            if op in ('act', 'pool'):  # modules' outputs come from capture_intermediates
                self.sow('intermediates', tag, x)
        return x

    @nn.compact
    def __call__(self, x, train: bool):
        """Maps images [batch, H, W, C] to float32 logits [batch, num_classes]."""
        x = x.astype(self.dtype)
        for i, features in enumerate(self.conv_features, start=1):
            conv = lambda features=features, **kw: nn.Conv(
                features, (3, 3), padding='SAME', dtype=self.dtype, **kw)
            x = self._block(x, f'conv{i}', conv, pool=True, train=train)
        x = x.reshape((x.shape[0], -1))
        dense = lambda **kw: nn.Dense(self.hidden_features, dtype=self.dtype, **kw)
        x = self._block(x, 'fc1', dense, pool=False, train=train)

        x = nn.Dense(self.num_classes, use_bias=not self.bn_on_output, dtype=self.dtype,
                     name='fc2')(x)
        if self.bn_on_output:
            x = self.norm(use_running_average=not train, name='bn_fc2')(x)
        return x.astype(jnp.float32)
