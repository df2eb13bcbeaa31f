"""BatchNorm as configured by the norm factory: NumPy reference maths and batch_stats rules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bn_study import norms
from bn_study.models import simple_cnn

MOMENTUM, EPSILON = 0.9, 1e-5


def _factory(batch_stats='per_device'):
    config = ml_collections.ConfigDict(
        {'batch_stats': batch_stats, 'momentum': MOMENTUM, 'epsilon': EPSILON})
    return norms.make_norm(config, jnp.float32)


def test_train_and_eval_outputs_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(8, 5, 5, 3)).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, 3).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    bn = _factory()(use_running_average=False)
    variables = bn.init(jax.random.PRNGKey(0), x)
    variables = {'params': {'scale': scale, 'bias': bias},
                 'batch_stats': variables['batch_stats']}

    y, updates = bn.apply(variables, x, mutable=['batch_stats'])
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))  # biased variance, as in the BN paper
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + EPSILON) * scale + bias,
                               rtol=1e-5, atol=1e-5)
    stats = updates['batch_stats']
    np.testing.assert_allclose(stats['mean'], (1 - MOMENTUM) * mean, rtol=1e-5)
    np.testing.assert_allclose(stats['var'], MOMENTUM * 1.0 + (1 - MOMENTUM) * var, rtol=1e-5)

    eval_bn = _factory()(use_running_average=True)
    y_eval = eval_bn.apply({'params': variables['params'], 'batch_stats': stats}, x)
    expected = (x - stats['mean']) / np.sqrt(stats['var'] + EPSILON) * scale + bias
    np.testing.assert_allclose(y_eval, expected, rtol=1e-5, atol=1e-5)


def test_batch_stats_change_in_train_mode_and_not_in_eval_mode():
    model = simple_cnn.SimpleCNN(norm=_factory(), bn_position='after_act')
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    before = variables['batch_stats']

    _, train_updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    _, eval_updates = model.apply(variables, x, train=False, mutable=['batch_stats'])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before,
                           train_updates['batch_stats'])
    assert all(jax.tree.leaves(changed))
    same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), before, eval_updates['batch_stats'])
    assert all(jax.tree.leaves(same))


def test_global_stats_pool_mean_and_second_moment_across_devices():
    """pmap over 4 devices with axis_name equals BN over the concatenated batch."""
    x = np.random.default_rng(0).normal(1.0, 3.0, size=(4, 2, 3, 3, 5)).astype(np.float32)
    bn = _factory('global')(use_running_average=False)
    variables = _factory()(use_running_average=False).init(jax.random.PRNGKey(0), x[0])

    def apply(x):
        return bn.apply(variables, x, mutable=['batch_stats'])
    y, updates = jax.pmap(apply, axis_name=norms.BATCH_AXIS)(x)
    one_device = jax.pmap(apply, axis_name=norms.BATCH_AXIS, devices=jax.devices()[:1])
    y_one, updates_one = one_device(x.reshape(1, 8, 3, 3, 5))
    y_one = np.asarray(y_one[0])
    np.testing.assert_allclose(y.reshape(8, 3, 3, 5), y_one, atol=1e-5)
    for key in ('mean', 'var'):
        np.testing.assert_allclose(updates['batch_stats'][key][0],
                                   updates_one['batch_stats'][key][0], atol=1e-5)
    # Per-device statistics, by contrast, differ from the pooled ones.
    y_local, _ = jax.pmap(lambda x: _factory('per_device')(use_running_average=False).apply(
        variables, x, mutable=['batch_stats']), axis_name=norms.BATCH_AXIS)(x)
    assert np.abs(np.asarray(y_local).reshape(8, 3, 3, 5) - y_one).max() > 1e-2
