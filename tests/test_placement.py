"""Per-layer placements, presets and the after-the-pool-before-the-activation position: what
each expands to, that the modules build exactly that, and one-line refusals."""

import jax
import numpy as np
import pytest

from bn_study import errors, schema
from bn_study.nn import catalog as nn_catalog
from bn_study.nn import placement
from configs import default
from tests.test_models import SMALL, _check_op_outputs, _model, _trace

SEED_CNN = ('conv1', 'conv2', 'fc1', 'fc2')


def _config(name='simple_cnn', bn_position='before_act', bn_on_output=False, **family):
    config = default.get_config()
    config.model.update(name=name, bn_position=bn_position, bn_on_output=bn_on_output)
    config.model[name].update(family)
    return config


def _ops_trace(trace) -> list[str]:
    return [name for name, _ in trace]


def _expected(positions: dict, pooled=('conv1', 'conv2')) -> list[str]:
    """The trace a placement should build: each layer's ops in its position's order."""
    names = []
    for layer, position in positions.items():
        order = (nn_catalog.OUTPUT_POSITIONS[position] if layer == 'fc2'
                 else nn_catalog.PLAIN_POSITIONS[position])
        names += [layer if op == 'layer' else f'{op}_{layer}' for op in order
                  if op != 'pool' or layer in pooled]
    return names


# ---- What each preset expands to -----------------------------------------------------------

PRESETS_ON_THE_SEED_CNN = {
    # "BN after Relu1, Relu2, FC1 and FC2": after the ReLUs, right after the dense FC1 (before
    # the ReLU this codebase adds there), and on the logits.
    'so_answer': ('after_act', 'after_act', 'before_act', 'after_layer'),
    'bn_paper': ('before_act', 'before_act', 'before_act', 'none'),
    'airbench': ('after_pool_before_act', 'after_pool_before_act', 'before_act', 'none'),
    'none': ('none', 'none', 'none', 'none'),
}


@pytest.mark.parametrize('preset', nn_catalog.PRESETS)
def test_each_preset_expands_to_its_published_layout_and_is_built_so(preset):
    expected = dict(zip(SEED_CNN, PRESETS_ON_THE_SEED_CNN[preset]))
    assert placement.describe(_config(bn_position=preset).model) == expected
    _, trace = _trace(_model('simple_cnn', preset))
    assert _ops_trace(trace) == _expected(expected)
    _check_op_outputs(trace)


def test_the_well_known_answers_layout_reads_as_it_is_written():
    _, trace = _trace(_model('simple_cnn', 'so_answer'))
    assert _ops_trace(trace) == [
        'conv1', 'act_conv1', 'norm_conv1', 'pool_conv1',  # BN after ReLU1 (before Pool1)
        'conv2', 'act_conv2', 'norm_conv2', 'pool_conv2',  # BN after ReLU2
        'fc1', 'norm_fc1', 'act_fc1',                      # BN after FC1
        'fc2', 'norm_fc2']                                 # BN after FC2


def test_presets_on_vgg_give_unpooled_convs_the_pool_free_position():
    positions = placement.describe(_config('vgg', 'airbench', **SMALL['vgg']).model)
    pooled = {'conv1', 'conv2', 'conv4', 'conv6', 'conv8'}  # VGG-11's stage ends
    assert positions == {**{f'conv{i}': ('after_pool_before_act' if f'conv{i}' in pooled
                                         else 'before_act') for i in range(1, 9)},
                         'fc1': 'none'}


# ---- after_pool_before_act ------------------------------------------------------------------

@pytest.mark.parametrize('kind, conv_bias', [('batch', False), ('layer', True)])
def test_the_norm_after_the_pool_sees_the_pooled_positions_and_cancels_the_bias(kind, conv_bias):
    variables, trace = _trace(_model('simple_cnn', 'after_pool_before_act', kind))
    outputs = dict(trace)
    assert _ops_trace(trace)[:4] == ['conv1', 'pool_conv1', 'norm_conv1', 'act_conv1']
    # Statistics over 14x14 pooled positions, a quarter of before_act's 28x28.
    assert outputs['norm_conv1'].shape[1:3] == (14, 14)
    assert outputs['norm_conv1'].shape == outputs['pool_conv1'].shape
    # A per-channel bias commutes with the max-pool, so a mean-removing norm cancels it.
    assert ('bias' in variables['params']['conv1']) == conv_bias
    assert 'bias' not in variables['params']['fc1'] or conv_bias  # fc1: BN before its act
    np.testing.assert_array_equal(outputs['act_conv1'], np.maximum(outputs['norm_conv1'], 0))


def test_after_pool_before_act_differs_from_before_act_and_after_pool():
    outputs = {}
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 28, 28, 1))
    for position in ('before_act', 'after_pool', 'after_pool_before_act'):
        model = _model('simple_cnn', position)
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        outputs[position] = np.asarray(model.apply(variables, x, train=True,
                                                   mutable=['batch_stats'])[0])
    assert not np.allclose(outputs['after_pool_before_act'], outputs['before_act'])
    assert not np.allclose(outputs['after_pool_before_act'], outputs['after_pool'])


# ---- Per-layer placements ---------------------------------------------------------------------

MIXED = 'conv1=after_pool_before_act,conv2=none,fc1=after_act,fc2=after_layer'


def test_a_mixed_per_layer_placement_builds_each_layer_as_told():
    variables, trace = _trace(_model('simple_cnn', MIXED))
    expected = {'conv1': 'after_pool_before_act', 'conv2': 'none', 'fc1': 'after_act',
                'fc2': 'after_layer'}
    assert placement.describe(_config(bn_position=MIXED).model) == expected
    assert _ops_trace(trace) == _expected(expected)
    _check_op_outputs(trace)
    params = variables['params']
    assert 'bias' not in params['conv1']  # BN after its pool
    assert 'bias' in params['conv2'] and 'bias' in params['fc1']  # no BN / BN after the ReLU
    assert 'bias' not in params['fc2']  # BN on the logits
    assert set(variables['batch_stats']) == {'norm_conv1', 'norm_fc1', 'norm_fc2'}


def test_the_order_of_a_per_layer_list_does_not_matter():
    shuffled = ','.join(reversed(MIXED.split(',')))
    assert (placement.describe(_config(bn_position=shuffled).model)
            == placement.describe(_config(bn_position=MIXED).model))


@pytest.mark.parametrize('name, position', [
    *((('simple_cnn', p) for p in nn_catalog.PLAIN_POSITIONS)),
    ('vgg', 'after_pool_before_act'), ('mlp', 'after_act')])
def test_a_uniform_position_builds_the_same_network_as_its_per_layer_spelling(name, position):
    config = _config(name, position, bn_on_output=True, **SMALL[name])
    spelled = ','.join(f'{layer}={p}' for layer, p in placement.describe(config.model).items())
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 28, 28, 1))
    out = []
    for bn_position, bn_on_output in ((position, True), (spelled, False)):
        model = _model(name, bn_position, bn_on_output=bn_on_output, **SMALL[name])
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        out.append((jax.tree.map(np.asarray, variables),
                    np.asarray(model.apply(variables, x, train=True,
                                           mutable=['batch_stats'])[0])))
    jax.tree.map(np.testing.assert_array_equal, out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize('name, settings', [
    ('simple_cnn', {}), ('simple_cnn', {'conv_features': (4, 4, 4)}),
    ('vgg', {'width': 4}), ('vgg', {'width': 4, 'depth': 13, 'hidden_features': (8, 8)}),
    ('mlp', {'hidden_features': (6, 6)})])
def test_the_declared_layers_are_the_layers_each_family_builds(name, settings):
    config = _config(name, 'none', **settings)
    declared = placement.layers(name, dict(config.model[name]))
    variables, trace = _trace(_model(name, 'none', **settings), batch=2, shape=(32, 32, 1))
    built = [n for n, _ in trace if '_' not in n]  # the layers' own tags, in call order
    assert [layer for layer, _ in declared] == built
    pooled = {n.removeprefix('pool_') for n, _ in trace if n.startswith('pool_')}
    assert {layer for layer, kind in declared if kind == 'conv_pooled'} == pooled


# ---- Refusals: one line naming the valid layers, positions or presets ------------------------

@pytest.mark.parametrize('name, bn_position, message', [
    ('simple_cnn', 'conv1=none,conv2=none,fc1=none,fc2=none,fc3=none',
     "names layer 'fc3', which simple_cnn does not have; its layers: conv1, conv2, fc1, fc2"),
    ('simple_cnn', 'conv1=after_act,conv2=after_act,fc1=after_act',
     'leaves out fc2; a per-layer placement gives every layer of simple_cnn a position: '
     'conv1, conv2, fc1, fc2'),
    ('simple_cnn', 'conv1=none,conv2=none,fc1=after_pool,fc2=none',
     "gives layer fc1 the position 'after_pool', which it cannot take (it has no pool); fc1 "
     'takes: none, before_act, after_act'),
    ('simple_cnn', 'conv1=none,conv2=none,fc1=none,fc2=before_act',
     "gives layer fc2 the position 'before_act', which it cannot take; fc2 takes: none, "
     'after_layer'),
    ('simple_cnn', 'conv1=none,conv1=after_act,fc1=none,fc2=none',
     'gives layer conv1 twice; give each of conv1, conv2, fc1, fc2 once'),
    ('simple_cnn', 'conv1=none,conv2,fc1=none,fc2=none', "'conv2' is not layer=position"),
    ('simple_cnn', 'airbnch', 'choose a position for every layer (none, before_act, after_act, '
     'after_pool, after_pool_before_act), a preset (so_answer, bn_paper, airbench, none), or '
     'one position per layer, e.g. conv1=before_act,conv2=before_act,fc1=before_act,fc2=none'),
    ('vgg', 'conv1=none,conv2=none,conv3=after_pool,conv4=none,conv5=none,conv6=none,'
     'conv7=none,conv8=none,fc1=none',
     "gives layer conv3 the position 'after_pool', which it cannot take (it has no pool)"),
    ('mlp', 'so_answr', 'e.g. fc1=before_act,fc2=before_act,fc3=before_act,fc4=none'),
    ('resnet', 'so_answer', "'so_answer' is not valid for model resnet; choose one of: "
     'original, bn_after_addition'),
])
def test_a_bad_placement_is_one_line_naming_the_valid_choices(name, bn_position, message):
    with pytest.raises(errors.ConfigError) as raised:
        schema.validate(_config(name, bn_position))
    assert message in str(raised.value) and '\n' not in str(raised.value)


def test_bn_on_output_goes_with_a_uniform_position_only():
    with pytest.raises(errors.ConfigError, match="bn_on_output=True goes with a uniform "
                                                 "bn_position only; 'so_answer' gives the "
                                                 'output layer its own position'):
        schema.validate(_config(bn_position='so_answer', bn_on_output=True))
    assert placement.describe(_config(bn_position='after_act', bn_on_output=True).model) == {
        'conv1': 'after_act', 'conv2': 'after_act', 'fc1': 'after_act', 'fc2': 'after_layer'}


# ---- Each preset and a mixed placement train ------------------------------------------------

@pytest.mark.parametrize('bn_position', [*nn_catalog.PRESETS, MIXED])
def test_each_preset_and_a_mixed_placement_train_a_pmapped_step(make_config, bn_position):
    from tests.test_extending import narrow_seed_cnn_trains_a_step
    config, state = narrow_seed_cnn_trains_a_step(make_config, model__bn_position=bn_position)
    normalized = {f'norm_{layer}' for layer, p in placement.describe(config.model).items()
                  if p != 'none'}
    assert set(state.batch_stats) == normalized
