"""2x2, stride-2, SAME max-pooling with a fast gradient; values and gradients bitwise equal to
flax's nn.max_pool(x, (2, 2), (2, 2), 'SAME').

Why: XLA's CPU backend computes nn.max_pool's gradient (select_and_scatter) about 25x slower
than this: 50 ms of the seed CNN's 140 ms training step at batch 128. Here the forward pass
is a reshape and a max, and the gradient goes to the first maximum of each window in
row-major order, exactly where select_and_scatter puts it (ties included).
"""

import jax
import jax.numpy as jnp


def _windows(x):
    """[B, H, W, C] -> [B, ceil(H/2), 2, ceil(W/2), 2, C]; SAME padding adds -inf at the end."""
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels)


@jax.custom_vjp
def max_pool_2x2(x):
    """Max over 2x2 windows with stride 2 and SAME padding, NHWC."""
    return _windows(x).max(axis=(2, 4))


def _forward(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _backward(residuals, g):
    x, y = residuals
    windows = _windows(x)
    taken = jnp.zeros(y.shape, bool)
    rows = []
    for i in range(2):
        row = []
        for j in range(2):
            first_max = (windows[:, :, i, :, j, :] == y) & ~taken
            taken = taken | first_max
            row.append(jnp.where(first_max, g, jnp.zeros_like(g)))
        rows.append(jnp.stack(row, axis=3))
    grad = jnp.stack(rows, axis=2).reshape(windows.shape[0], windows.shape[1] * 2,
                                           windows.shape[3] * 2, windows.shape[5])
    return (grad[:, :x.shape[1], :x.shape[2], :],)


max_pool_2x2.defvjp(_forward, _backward)
