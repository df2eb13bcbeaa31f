"""SimpleCNN: order of operations per placement, bias rules, parameter names and counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_study import choices, norms
from bn_study.models import simple_cnn
from configs import default


def _cnn(**fields):
    """SimpleCNN with the default norm settings, per-device so it runs outside pmap."""
    config = default.get_config().norm
    config.batch_stats = 'per_device'
    return simple_cnn.SimpleCNN(norm=norms.make_norm(config, fields.get('dtype', jnp.float32)),
                                **fields)

EXPECTED_ORDER = {
    'none': ['conv1', 'relu_conv1', 'pool_conv1', 'conv2', 'relu_conv2', 'pool_conv2',
             'fc1', 'relu_fc1', 'fc2'],
    'before_act': ['conv1', 'bn_conv1', 'relu_conv1', 'pool_conv1',
                   'conv2', 'bn_conv2', 'relu_conv2', 'pool_conv2',
                   'fc1', 'bn_fc1', 'relu_fc1', 'fc2'],
    'after_act': ['conv1', 'relu_conv1', 'bn_conv1', 'pool_conv1',
                  'conv2', 'relu_conv2', 'bn_conv2', 'pool_conv2',
                  'fc1', 'relu_fc1', 'bn_fc1', 'fc2'],
    'after_pool': ['conv1', 'relu_conv1', 'pool_conv1', 'bn_conv1',
                   'conv2', 'relu_conv2', 'pool_conv2', 'bn_conv2',
                   'fc1', 'relu_fc1', 'bn_fc1', 'fc2'],
}


def _trace(bn_position, bn_on_output=False, batch=16):
    """Runs one train-mode forward pass and returns the outputs of each op, in call order."""
    model = _cnn(bn_position=bn_position, bn_on_output=bn_on_output)
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    _, state = model.apply(variables, x, train=True, mutable=['batch_stats', 'intermediates'],
                           capture_intermediates=True)
    inter = state['intermediates']
    trace = []
    for name, value in inter.items():
        if name == '__call__':
            continue
        out = value['__call__'][0] if isinstance(value, dict) else value[0]
        trace.append((name, np.asarray(out)))
    return variables, trace


@pytest.mark.parametrize('bn_position', choices.BN_POSITIONS)
def test_order_of_operations(bn_position):
    _, trace = _trace(bn_position)
    assert [name for name, _ in trace] == EXPECTED_ORDER[bn_position]
    previous = None
    for name, out in trace:
        axes = tuple(range(out.ndim - 1))
        if name.startswith('relu'):
            assert out.min() >= 0
        if name.startswith('bn'):  # train mode at init: BN standardises the previous op
            np.testing.assert_allclose(out.mean(axes), 0, atol=1e-4)
            var_in = previous.var(axes)
            np.testing.assert_allclose(out.var(axes), var_in / (var_in + 1e-5), atol=1e-3)
            assert out.min() < 0  # so a BN output can't pass for a ReLU output
        if name.startswith('pool'):
            assert out.shape[1:3] == (previous.shape[1] // 2, previous.shape[2] // 2)
        previous = out


def test_bn_on_output_adds_a_last_norm():
    _, trace = _trace('after_act', bn_on_output=True)
    assert [name for name, _ in trace][-2:] == ['fc2', 'bn_fc2']
    np.testing.assert_allclose(trace[-1][1].mean(0), 0, atol=1e-4)


@pytest.mark.parametrize('bn_position', choices.BN_POSITIONS)
@pytest.mark.parametrize('bn_on_output', [False, True])
def test_bias_only_where_no_norm_follows(bn_position, bn_on_output):
    variables, _ = _trace(bn_position, bn_on_output, batch=2)
    params = variables['params']
    for layer in ('conv1', 'conv2', 'fc1'):
        assert ('bias' in params[layer]) == (bn_position != 'before_act'), layer
    assert ('bias' in params['fc2']) == (not bn_on_output)
    norms = {k for k in params if k.startswith('bn_')}
    expected = set() if bn_position == 'none' else {'bn_conv1', 'bn_conv2', 'bn_fc1'}
    assert norms == expected | ({'bn_fc2'} if bn_on_output else set())
    assert set(variables.get('batch_stats', {})) == norms


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def test_parameter_counts_match_hand_computation():
    conv1, conv2 = 3 * 3 * 1 * 32, 3 * 3 * 32 * 64
    fc1, fc2 = 7 * 7 * 64 * 256, 256 * 10
    biases = 32 + 64 + 256
    none, _ = _trace('none', batch=2)
    assert _count(none['params']) == conv1 + conv2 + fc1 + fc2 + biases + 10
    before, _ = _trace('before_act', batch=2)  # biases replaced by BN scale and bias
    assert _count(before['params']) == conv1 + conv2 + fc1 + fc2 + 2 * biases + 10
    after, _ = _trace('after_act', bn_on_output=True, batch=2)
    assert _count(after['params']) == conv1 + conv2 + fc1 + fc2 + 3 * biases + 2 * 10
    assert _count(after['batch_stats']) == 2 * (biases + 10)


def test_layer_names_are_stable_across_placements():
    names = {p: {k for k in _trace(p, batch=2)[0]['params'] if not k.startswith('bn_')}
             for p in choices.BN_POSITIONS}
    assert all(n == {'conv1', 'conv2', 'fc1', 'fc2'} for n in names.values())


def test_unknown_bn_position_lists_the_choices():
    with pytest.raises(choices.ConfigError, match='none, before_act, after_act, after_pool'):
        _cnn(bn_position='after_relu')


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model = _cnn(bn_position='before_act', dtype=jnp.bfloat16)
    x = jnp.ones((2, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables['params']))
    assert model.apply(variables, x, train=False).dtype == jnp.float32
