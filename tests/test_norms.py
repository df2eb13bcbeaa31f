"""The norm factory: every kind against NumPy, ghost and per-device BatchNorm, bad shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_study import errors
from bn_study.nn import catalog as nn_catalog
from bn_study.nn import norms
from bn_study.training import norm_record
from configs import default

MOMENTUM, EPSILON = 0.9, 1e-5


def _norm(kind='batch', **overrides):
    """A norm layer from the default config's norm settings, with overrides."""
    config = default.get_config().norm
    config.kind = kind
    config.stats_scope = 'per_device'
    config.update(overrides)
    return norms.make_norm(config, jnp.float32)('norm')


def _apply(layer, x, train=True, variables=None, scale=None, bias=None):
    variables = variables or layer.init(jax.random.PRNGKey(0), x, train=False)
    if scale is not None:
        variables = {**variables, 'params': {'scale': scale, 'bias': bias}}
    return layer.apply(variables, x, train=train, mutable=['batch_stats'])


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=shape).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32)
    bias = rng.normal(size=shape[-1]).astype(np.float32)
    return x, scale, bias


def _standardize(x, axes):
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + EPSILON)


def test_batch_norm_train_and_eval_match_numpy():
    x, scale, bias = _data((8, 5, 5, 3))
    layer = _norm('batch')
    y, updates = _apply(layer, x, scale=scale, bias=bias)
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))  # biased variance, as in the BN paper
    np.testing.assert_allclose(y, _standardize(x, (0, 1, 2)) * scale + bias, rtol=1e-5, atol=1e-5)
    stats = updates['batch_stats']
    np.testing.assert_allclose(stats['mean'], (1 - MOMENTUM) * mean, rtol=1e-5)
    np.testing.assert_allclose(stats['var'], MOMENTUM + (1 - MOMENTUM) * var, rtol=1e-5)

    y_eval, unchanged = layer.apply({'params': {'scale': scale, 'bias': bias},
                                     'batch_stats': stats}, x, train=False,
                                    mutable=['batch_stats'])
    expected = (x - stats['mean']) / np.sqrt(stats['var'] + EPSILON) * scale + bias
    np.testing.assert_allclose(y_eval, expected, rtol=1e-5, atol=1e-5)
    jax.tree.map(np.testing.assert_array_equal, unchanged['batch_stats'], stats)


def test_ghost_batches_of_the_whole_batch_equal_plain_batch_norm():
    x, scale, bias = _data((16, 4, 4, 3))
    plain = _apply(_norm('batch'), x, scale=scale, bias=bias)
    ghost = _apply(_norm('batch', stats_scope='ghost', ghost_batch_size=16), x,
                   scale=scale, bias=bias)
    jax.tree.map(np.testing.assert_array_equal, plain, ghost)


def test_ghost_batches_normalize_each_slice_and_average_its_statistics():
    x, scale, bias = _data((16, 4, 4, 3))
    y, updates = _apply(_norm('batch', stats_scope='ghost', ghost_batch_size=4), x,
                        scale=scale, bias=bias)
    ghosts = x.reshape(4, 4, 4, 4, 3)
    expected = _standardize(ghosts, (1, 2, 3)).reshape(x.shape) * scale + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updates['batch_stats']['var'],
                               MOMENTUM + (1 - MOMENTUM) * ghosts.var((1, 2, 3)).mean(0),
                               rtol=1e-5)
    assert np.abs(y - _apply(_norm('batch'), x, scale=scale, bias=bias)[0]).max() > 1e-2


def test_per_device_batch_norm_under_pmap_equals_ghost_batches_of_the_slice():
    x, _, _ = _data((4, 6, 3, 3, 5))
    per_device = _norm('batch', stats_scope='per_device')
    variables = per_device.init(jax.random.PRNGKey(0), x[0], train=False)

    def step(x):
        y, updates = per_device.apply(variables, x, train=True, mutable=['batch_stats'])
        return y, jax.lax.pmean(updates, norms.BATCH_AXIS)  # as train_step pools them
    y, updates = jax.pmap(step, axis_name=norms.BATCH_AXIS)(x)
    y_ghost, updates_ghost = _apply(_norm('batch', stats_scope='ghost', ghost_batch_size=6),
                                    x.reshape(24, 3, 3, 5), variables=variables)
    np.testing.assert_allclose(np.asarray(y).reshape(24, 3, 3, 5), y_ghost, rtol=1e-5, atol=1e-5)
    for key in ('mean', 'var'):
        np.testing.assert_allclose(updates['batch_stats'][key][0],
                                   updates_ghost['batch_stats'][key], rtol=1e-5, atol=1e-6)


def test_global_batch_norm_pools_mean_and_second_moment_across_devices():
    x, _, _ = _data((4, 2, 3, 3, 5))
    layer = _norm('batch', stats_scope='global')
    variables = _norm('batch').init(jax.random.PRNGKey(0), x[0], train=False)
    apply = lambda x: layer.apply(variables, x, train=True, mutable=['batch_stats'])
    y, updates = jax.pmap(apply, axis_name=norms.BATCH_AXIS)(x)
    flat = x.reshape(8, 3, 3, 5)
    np.testing.assert_allclose(np.asarray(y).reshape(flat.shape), _standardize(flat, (0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    # The pooled variance is the whole batch's, not the mean of the devices' variances.
    np.testing.assert_allclose(updates['batch_stats']['var'][0],
                               MOMENTUM + (1 - MOMENTUM) * flat.var((0, 1, 2)), rtol=1e-5)
    assert np.abs(flat.var((0, 1, 2)) - x.var((1, 2, 3)).mean(0)).max() > 1e-2


@pytest.mark.parametrize('kind, groups', [('layer', 1), ('group', 4), ('instance', 8)])
def test_per_example_norms_match_numpy_on_conv_features(kind, groups):
    x, scale, bias = _data((3, 4, 5, 8))
    y, updates = _apply(_norm(kind, num_groups=4), x, scale=scale, bias=bias)
    grouped = x.reshape(3, 4, 5, groups, 8 // groups)
    expected = _standardize(grouped, (1, 2, 4)).reshape(x.shape) * scale + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert updates == {}  # no running statistics: train and test normalize alike
    y_eval, _ = _apply(_norm(kind, num_groups=4), x, train=False, scale=scale, bias=bias)
    np.testing.assert_array_equal(y, y_eval)


@pytest.mark.parametrize('kind, groups', [('layer', 1), ('group', 2)])
def test_per_example_norms_match_numpy_on_dense_features(kind, groups):
    x, scale, bias = _data((5, 6))
    y, _ = _apply(_norm(kind, num_groups=2), x, scale=scale, bias=bias)
    expected = _standardize(x.reshape(5, groups, 6 // groups), (2,)).reshape(x.shape)
    np.testing.assert_allclose(y, expected * scale + bias, rtol=1e-5, atol=1e-5)


def test_instance_norm_of_a_dense_layer_is_refused():
    with pytest.raises(errors.ConfigError, match='kind=instance would normalize single values'):
        _apply(_norm('instance'), np.ones((4, 6), np.float32))


def test_a_group_count_that_does_not_divide_the_channels_lists_the_divisors():
    with pytest.raises(errors.ConfigError,
                       match=r'num_groups=4 does not divide the 6 channels of norm; '
                             r'choose one of: 1, 2, 3, 6'):
        _apply(_norm('group', num_groups=4), np.ones((2, 3, 3, 6), np.float32))


def test_a_ghost_size_that_does_not_divide_the_batch_is_refused():
    with pytest.raises(errors.ConfigError, match='ghost_batch_size=5 does not divide'):
        _apply(_norm('batch', stats_scope='ghost', ghost_batch_size=5), np.ones((8, 3)))


@pytest.mark.parametrize('kind', ['batch', 'layer', 'group', 'instance'])
def test_affine_options_and_zero_init(kind):
    x = np.random.default_rng(0).normal(size=(4, 3, 3, 8)).astype(np.float32)
    bare = _norm(kind, num_groups=4, use_scale=False, use_bias=False)
    assert 'params' not in bare.init(jax.random.PRNGKey(0), x, train=False)
    config = default.get_config().norm
    config.update(kind=kind, num_groups=4, stats_scope='per_device', zero_init_last_scale=True)
    factory = norms.make_norm(config, jnp.float32)
    last = factory('last', last_in_residual_branch=True).init(jax.random.PRNGKey(0), x, train=False)
    other = factory('other').init(jax.random.PRNGKey(0), x, train=False)
    assert not last['params']['scale'].any() and other['params']['scale'].all()


def test_none_is_an_identity_without_variables():
    x = np.ones((2, 3), np.float32)
    layer = _norm('none')
    assert layer.init(jax.random.PRNGKey(0), x, train=False) == {}
    np.testing.assert_array_equal(layer.apply({}, x, train=True), x)


def test_only_batch_and_instance_norm_cancel_a_preceding_bias():
    config = default.get_config().norm
    cancels = {}
    for kind in nn_catalog.NORM_KINDS:
        config.kind = kind
        cancels[kind] = norms.make_norm(config, jnp.float32).cancels_preceding_bias
    assert cancels == {'batch': True, 'layer': False, 'group': False, 'instance': True,
                       'none': False}


def test_the_run_summary_describes_what_each_kind_pools():
    config = default.get_config()
    config.update(batch_size=128)
    config.norm.num_groups = 4
    config.eval.update(stats=('ema', 'precise', 'batch'), precise_bn_examples=2048)
    common = {'num_devices': 4, 'epsilon': 1e-5, 'use_scale': True, 'use_bias': True,
              'zero_init_last_scale': False}
    per_example = {'scope': 'per_example', 'examples_per_statistic': 1}
    expected = {
        'batch': {'kind': 'batch', **common, 'scope': 'per_device', 'examples_per_statistic': 32,
                  'momentum': 0.9, 'eval_stats': {'ema': {'momentum': 0.9},
                                                  'precise': {'examples': 2048},
                                                  'batch': {'examples_per_statistic': 32}}},
        'layer': {'kind': 'layer', **common, **per_example, 'num_groups': 1},
        'group': {'kind': 'group', **common, **per_example, 'num_groups': 4},
        'instance': {'kind': 'instance', **common, **per_example,
                     'num_groups': 'one per channel'},
        'none': {'kind': 'none', 'scope': 'no_norm_layers', 'num_devices': 4},
    }
    config.norm.stats_scope = 'per_device'
    for kind in nn_catalog.NORM_KINDS:
        config.norm.kind = kind
        # The keys' order is the summary record's too.
        assert list(norm_record.describe(config, True, 4).items()) == \
            list(expected[kind].items())
        assert norm_record.describe(config, False, 4) == expected['none']
