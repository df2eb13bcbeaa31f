"""The fast 2x2 max-pool against flax's nn.max_pool: values and gradients bitwise equal."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_study.nn.pooling import max_pool_2x2


def _reference(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')


@pytest.mark.parametrize('shape', [(3, 8, 6, 4), (2, 7, 7, 5), (2, 5, 4, 3), (1, 1, 3, 2)])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_values_and_gradients_match_flax_max_pool_with_ties(shape, dtype):
    rng = np.random.default_rng(0)
    # Few distinct values: most windows hold ties, whose gradient must go to the first
    # maximum in row-major order, as select_and_scatter sends it.
    x = jnp.asarray(rng.integers(-2, 3, size=shape), dtype)
    expected, expected_vjp = jax.vjp(_reference, x)
    got, got_vjp = jax.vjp(max_pool_2x2, x)
    g = jnp.asarray(rng.normal(size=expected.shape), dtype)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(expected, np.float32))
    np.testing.assert_array_equal(np.asarray(got_vjp(g)[0], np.float32),
                                  np.asarray(expected_vjp(g)[0], np.float32))


def test_gradient_of_a_tie_goes_to_one_element_only():
    x = jnp.zeros((1, 2, 2, 1))
    grad = jax.grad(lambda x: max_pool_2x2(x).sum())(x)
    np.testing.assert_array_equal(np.asarray(grad)[0, :, :, 0], [[1, 0], [0, 0]])


def test_jitted_gradients_of_a_nonlinear_loss_match():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 6, 3)), jnp.float32)
    loss = lambda pool: lambda x: jnp.sum(jnp.square(pool(x)) * jnp.arange(3.0))
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.grad(loss(max_pool_2x2)))(x)),
                                  np.asarray(jax.jit(jax.grad(loss(_reference)))(x)))
