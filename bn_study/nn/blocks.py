"""Pieces the plain families share: the op order of a block, and the output layer.

Every op's output is sown into 'intermediates' as '<tag>_out', in call order, so tests can
read back the order of operations. (The suffix keeps a layer's tag apart from its module's
name, which flax does not let a sown value reuse.)
"""

from typing import Callable

import flax.linen as nn

from bn_study.nn import placement
from bn_study.nn.norms import NormFactory
from bn_study.nn.pooling import max_pool_2x2

# The collection a block sows its activations' inputs into when it is mutable (diagnostics).
ACTIVATION_INPUTS = 'activation_inputs'


def record(module: nn.Module, tag: str, x):
    """Sows `x` as the output of the op named `tag`; returns it unchanged."""
    module.sow('intermediates', f'{tag}_out', x)
    return x


def max_pool(x):
    # SAME padding halves 28 -> 14 -> 7 -> 4 -> 2 -> 1 as well as 32 -> ... -> 1, so one
    # network shape serves both input sizes. nn.max_pool's values and gradients, faster.
    return max_pool_2x2(x)


def plain_block(module: nn.Module, x, name: str, make_layer: Callable, norm: NormFactory,
                ops: tuple, activation: Callable, train: bool):
    """The layer, norm, activation and pool of one block in the order `ops` gives (its entry
    in placement.layer_ops); tags derive from `name`.

    `make_layer(use_bias, name)` builds the conv or dense layer of the block.
    """
    cancelled = placement.norm_follows_layer(ops) and norm.cancels_preceding_bias
    layer = make_layer(use_bias=not cancelled, name=name)
    for op in ops:
        if op == 'layer':
            x = record(module, name, layer(x))
        elif op == 'norm':
            x = record(module, f'norm_{name}', norm(f'norm_{name}')(x, train))
        elif op == 'act':
            if module.is_mutable_collection(ACTIVATION_INPUTS):  # diagnostics ask for it
                module.sow(ACTIVATION_INPUTS, f'act_{name}', x[..., 0])
            x = record(module, f'act_{name}', activation(x))
        else:
            x = record(module, f'pool_{name}', max_pool(x))
    return x


def output_layer(module: nn.Module, x, name: str, num_classes: int, norm: NormFactory,
                 norm_output: bool, dtype, train: bool, kernel_init=None):
    """The logits layer, normalized too if `norm_output`; returns float32 logits."""
    kwargs = {} if kernel_init is None else {'kernel_init': kernel_init}
    dense = nn.Dense(num_classes, use_bias=not (norm_output and norm.cancels_preceding_bias),
                     dtype=dtype, name=name, **kwargs)
    x = record(module, name, dense(x))
    if norm_output:
        x = record(module, f'norm_{name}', norm(f'norm_{name}')(x, train))
    return x.astype('float32')
