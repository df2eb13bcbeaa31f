"""Every family: order of operations per placement, bias rules, names, pinned parameter counts."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_study import errors, schema
from bn_study.nn import catalog as nn_catalog
from bn_study.nn import models
from configs import default

# Small widths keep the traces fast; parameter counts below use the default widths.
SMALL = {'simple_cnn': {}, 'vgg': {'width': 4}, 'resnet': {'depth': 8, 'width': 4},
         'mlp': {'hidden_features': (12, 12, 12)}}


def _model(name, bn_position, kind='batch', bn_on_output=False, **family):
    config = default.get_config()
    config.model.update(name=name, bn_position=bn_position, bn_on_output=bn_on_output)
    config.model[name].update(family)
    config.norm.update(kind=kind, stats_scope='per_device', num_groups=2)  # runs outside pmap
    return models.build_model(config.model, config.norm, num_classes=10)


def _trace(model, batch=8, shape=(28, 28, 1)):
    """Variables, and (tag, output) of every op in call order, nested units flattened."""
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, *shape))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    _, state = model.apply(variables, x, train=True, mutable=['batch_stats', 'intermediates'])

    def flatten(tree, prefix=''):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from flatten(value, f'{prefix}{key}/')
            else:
                yield f'{prefix}{key.removesuffix("_out")}', np.asarray(value[0])
    return variables, list(flatten(state['intermediates']))


def _check_op_outputs(trace, kind='batch'):
    """ReLUs are non-negative, pools halve, batch-mode BN standardizes each channel."""
    previous = None
    for name, out in trace:
        op = name.rsplit('/', 1)[-1]
        if op.startswith('act'):  # ReLU or sigmoid
            assert out.min() >= 0, name
        if op.startswith('norm') and kind == 'batch':
            axes = tuple(range(out.ndim - 1))
            np.testing.assert_allclose(out.mean(axes), 0, atol=1e-4, err_msg=name)
            assert out.min() < 0  # so a norm output can't pass for a ReLU output
        if op.startswith('pool_conv'):
            assert out.shape[1] == -(-previous.shape[1] // 2), name
        previous = out


# ---- SimpleCNN and VGG: the plain placements --------------------------------------------

def _plain(layers, pooled, position):
    """The expected trace of a plain network: each layer's ops in the placement's order."""
    order = {'none': ['', 'act', 'pool'], 'before_act': ['', 'norm', 'act', 'pool'],
             'after_act': ['', 'act', 'norm', 'pool'], 'after_pool': ['', 'act', 'pool', 'norm'],
             'after_pool_before_act': ['', 'pool', 'norm', 'act']}
    trace = []
    for layer in layers:
        for op in order[position]:
            if op == 'pool' and layer not in pooled:
                continue
            trace.append(f'{op}_{layer}' if op else layer)
    return trace


@pytest.mark.parametrize('position', nn_catalog.PLAIN_POSITIONS)
def test_simple_cnn_order_of_operations(position):
    _, trace = _trace(_model('simple_cnn', position))
    assert [n for n, _ in trace] == _plain(['conv1', 'conv2', 'fc1'], {'conv1', 'conv2'},
                                           position) + ['fc2']
    _check_op_outputs(trace)


@pytest.mark.parametrize('position', nn_catalog.PLAIN_POSITIONS)
def test_vgg11_order_of_operations(position):
    _, trace = _trace(_model('vgg', position, **SMALL['vgg']), shape=(32, 32, 3))
    convs = [f'conv{i}' for i in range(1, 9)]
    # VGG-11: 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M
    pooled = {'conv1', 'conv2', 'conv4', 'conv6', 'conv8'}
    assert [n for n, _ in trace] == _plain(convs, pooled, position) + ['fc1']
    _check_op_outputs(trace)
    assert trace[-2][1].shape[1:3] == (1, 1)  # five pools: 32 -> 1


def test_vgg_hidden_layers_get_the_norm_too():
    _, trace = _trace(_model('vgg', 'after_act', width=4, hidden_features=(16,)))
    assert [n for n, _ in trace][-4:] == ['fc1', 'act_fc1', 'norm_fc1', 'fc2']


@pytest.mark.parametrize('position', nn_catalog.MLP_POSITIONS)
def test_mlp_order_of_operations(position):
    _, trace = _trace(_model('mlp', position, **SMALL['mlp']))
    assert [n for n, _ in trace] == _plain(['fc1', 'fc2', 'fc3'], set(), position) + ['fc4']
    for name, out in trace:
        if name.startswith('act'):  # sigmoid
            assert 0 < out.min() and out.max() < 1


def test_mlp_rejects_after_pool():
    with pytest.raises(errors.ConfigError,
                       match=r"'after_pool' is not valid for model mlp; choose a position for "
                             r'every layer \(none, before_act, after_act\), a preset'):
        _model('mlp', 'after_pool')


# ---- ResNet: the residual units of He et al. 2016 -----------------------------------------

# Fig. 4 of Identity Mappings, unit by unit; '+' is the addition.
UNITS = {
    'original': 'conv1 norm1 act1 conv2 norm2 + act_add',
    'bn_after_addition': 'conv1 norm1 act1 conv2 + norm_add act_add',
    'relu_before_addition': 'conv1 norm1 act1 conv2 norm2 act2 +',
    'relu_only_preactivation': 'act1 conv1 norm1 act2 conv2 norm2 +',
    'full_preactivation': 'norm1 act1 conv1 norm2 act2 conv2 +',
    'none': 'conv1 act1 conv2 + act_add',
}
# unit -> (the branch's last op, the shortcut's op if not the unit's input)
ADDITION = {
    'original': ('norm2', None), 'bn_after_addition': ('conv2', None),
    'relu_before_addition': ('act2', None), 'none': ('conv2', None),
    'relu_only_preactivation': ('norm2', 'stage1_unit1/act1'),
    'full_preactivation': ('conv2', 'stage1_unit1/act1'),
}
STEM = {'full_preactivation': 'conv_stem', 'none': 'conv_stem act_stem'}
HEAD = {'full_preactivation': 'norm_head act_head', 'relu_only_preactivation': 'act_head'}


@pytest.mark.parametrize('unit', nn_catalog.RESIDUAL_UNITS)
def test_resnet_units_follow_he_et_al(unit):
    model = _model('resnet', unit, depth=14, width=4)  # two units per stage
    _, trace = _trace(model)
    names = [n for n, _ in trace]
    ops = UNITS[unit].replace('+', 'add').split()
    shortcut = ['projection'] + (['norm_projection'] if unit in (
        'original', 'bn_after_addition', 'relu_before_addition') else [])
    at_add = ops.index('add')
    projected = ops[:at_add] + shortcut + ops[at_add:]
    expected = STEM.get(unit, 'conv_stem norm_stem act_stem').split()
    for stage in (1, 2, 3):
        for i in (1, 2):
            unit_ops = projected if stage > 1 and i == 1 else ops
            expected += [f'stage{stage}_unit{i}/{op}' for op in unit_ops]
    expected += HEAD.get(unit, '').split() + ['pool_head', 'fc']
    assert names == expected
    _check_op_outputs(trace)

    # The additions add the branch and the shortcut. The network's first unit pre-activates
    # before the split, so its shortcut sees that too (He et al.'s 'both_preact').
    outputs = dict(trace)
    before = lambda name: outputs[names[names.index(name) - 1]]
    branch_end, first_shortcut = ADDITION[unit]
    add = lambda u: outputs[f'{u}/add']
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    first_input = outputs[first_shortcut] if first_shortcut else before(f'stage1_unit1/{ops[0]}')
    close(add('stage1_unit1'), outputs[f'stage1_unit1/{branch_end}'] + first_input)
    # A later unit of the stage: identity shortcut of the unit's raw input (the previous
    # unit's output: after its ReLU for post-activation units, the bare sum for pre-act).
    close(add('stage1_unit2'),
          outputs[f'stage1_unit2/{branch_end}'] + before(f'stage1_unit2/{ops[0]}'))
    # A stage's first unit: the projection shortcut.
    close(add('stage2_unit1'),
          outputs[f'stage2_unit1/{branch_end}'] + outputs[f'stage2_unit1/{shortcut[-1]}'])
    assert add('stage2_unit1').shape[1:] == (14, 14, 8)


def test_bottleneck_units_have_three_convs_and_a_wider_output():
    variables, trace = _trace(_model('resnet', 'full_preactivation', depth=11,
                                     block='bottleneck', width=4))
    unit = [n.split('/', 1)[1] for n, _ in trace if n.startswith('stage2_unit1/')]
    assert unit == 'norm1 act1 conv1 norm2 act2 conv2 norm3 act3 conv3 projection add'.split()
    params = variables['params']['stage2_unit1']
    assert params['conv1']['kernel'].shape == (1, 1, 16, 8)  # 4 x 4 in, the stage's 8 inner
    assert params['conv2']['kernel'].shape == (3, 3, 8, 8)
    assert params['conv3']['kernel'].shape == (1, 1, 8, 32)
    assert params['projection']['kernel'].shape == (1, 1, 16, 32)


def test_zero_pad_shortcuts_have_no_parameters():
    projection, _ = _trace(_model('resnet', 'original', **SMALL['resnet']))
    zero_pad, trace = _trace(_model('resnet', 'original', shortcut='zero_pad', **SMALL['resnet']))
    assert 'projection' in projection['params']['stage2_unit1']
    assert 'projection' not in zero_pad['params']['stage2_unit1']
    outputs = dict(trace)
    assert outputs['stage3_unit1/add'].shape == (8, 7, 7, 16)
    # Zero-padded shortcut: the strided input in the first channels, zeros after them.
    unit_input = outputs['stage1_unit1/act_add']  # stage 1 has one unit at depth 8
    branch = outputs['stage2_unit1/norm2']
    shortcut = outputs['stage2_unit1/add'] - branch
    np.testing.assert_allclose(shortcut[..., :4], unit_input[:, ::2, ::2, :], atol=1e-5)
    np.testing.assert_allclose(shortcut[..., 4:], 0, atol=1e-5)


@pytest.mark.parametrize('unit', [name for name, unit in nn_catalog.RESIDUAL_UNITS.items()
                                  if unit.ends_on_norm])
def test_zero_init_starts_each_branch_at_zero_and_still_trains_it(unit):
    config = default.get_config()
    config.model.update(name='resnet', bn_position=unit)
    config.model.resnet.update(depth=8, width=4)
    config.norm.update(stats_scope='per_device', zero_init_last_scale=True)
    schema.validate(config)
    model = models.build_model(config.model, config.norm, num_classes=10)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    params = variables['params']
    for name in ('stage1_unit1', 'stage2_unit1', 'stage3_unit1'):
        assert not params[name]['norm2']['scale'].any()
        assert params[name]['norm1']['scale'].all()
    assert params['norm_stem']['scale'].all()

    def loss(params):
        logits, _ = model.apply({**variables, 'params': params}, x, train=True,
                                mutable=['batch_stats'])
        return logits.sum() ** 2
    grads = jax.grad(loss)(params)
    # The zeroed scale itself gets a gradient, so the branch can open up.
    assert np.abs(grads['stage2_unit1']['norm2']['scale']).max() > 1e-6


@pytest.mark.parametrize('unit', ['bn_after_addition', 'relu_before_addition',
                                  'full_preactivation', 'none'])
def test_zero_init_is_refused_where_a_relu_or_conv_follows_the_last_norm(unit):
    config = default.get_config()
    config.model.update(name='resnet', bn_position=unit)
    config.norm.zero_init_last_scale = True
    with pytest.raises(errors.ConfigError,
                       match='choose model resnet with one of: original, relu_only_preact'):
        schema.validate(config)


# unit -> convs of a unit that keep their bias (under BatchNorm), and does the stem's.
RESNET_BIASES = {
    'original': ([], False), 'bn_after_addition': ([], False),  # conv2 + shortcut, then BN
    'relu_before_addition': ([], False), 'relu_only_preactivation': ([], False),
    'full_preactivation': (['conv2'], False),  # conv2 meets the addition, no norm after it
    'none': (['conv1', 'conv2'], True),
}


@pytest.mark.parametrize('unit', nn_catalog.RESIDUAL_UNITS)
def test_resnet_convs_keep_a_bias_only_where_no_norm_removes_it(unit):
    params = _trace(_model('resnet', unit, **SMALL['resnet']), batch=2)[0]['params']
    biased, stem = RESNET_BIASES[unit]
    for name in ('stage1_unit1', 'stage2_unit1'):
        assert sorted(c for c in ('conv1', 'conv2') if 'bias' in params[name][c]) == biased
    assert 'bias' not in params['stage2_unit1']['projection']
    assert ('bias' in params['conv_stem']) == stem
    layer_norm = _trace(_model('resnet', unit, 'layer', **SMALL['resnet']), batch=2)[0]
    assert all('bias' in layer_norm['params']['stage1_unit1'][c] for c in ('conv1', 'conv2'))


def test_resnet_depths_that_are_not_6n_plus_2_are_refused():
    with pytest.raises(errors.ConfigError, match='depth=21 is not 6n\\+2 as basic blocks need'):
        _model('resnet', 'original', depth=21)
    with pytest.raises(errors.ConfigError, match='depth=32 is not 9n\\+2 as bottleneck'):
        _model('resnet', 'original', depth=32, block='bottleneck')


# ---- Every family: biases, names, kinds, counts --------------------------------------------

@pytest.mark.parametrize('name', nn_catalog.MODELS)
@pytest.mark.parametrize('kind', nn_catalog.NORM_KINDS)
def test_every_norm_kind_runs_in_every_family(name, kind):
    position = {'resnet': 'original', 'mlp': 'after_act'}.get(name, 'after_act')
    if kind == 'instance' and name in ('simple_cnn', 'mlp'):  # they normalize dense layers
        with pytest.raises(errors.ConfigError, match='kind=instance would normalize'):
            _trace(_model(name, position, kind, **SMALL[name]))
        return
    variables, trace = _trace(_model(name, position, kind, **SMALL[name]))
    assert np.isfinite(trace[-1][1]).all()
    assert ('batch_stats' in variables) == (kind == 'batch')
    norm_layers = [n for n, _ in trace if n.rsplit('/', 1)[-1].startswith('norm')]
    assert norm_layers
    _check_op_outputs(trace, kind)


@pytest.mark.parametrize('kind', ['batch', 'layer', 'group', 'instance', 'none'])
def test_a_bias_precedes_a_norm_only_where_the_norm_keeps_it(kind):
    variables, _ = _trace(_model('vgg', 'before_act', kind, **SMALL['vgg']), batch=2)
    cancelled = kind in ('batch', 'instance')
    for i in range(1, 9):
        assert ('bias' in variables['params'][f'conv{i}']) == (not cancelled)
    assert 'bias' in variables['params']['fc1']  # the logits layer has no norm after it


@pytest.mark.parametrize('name', nn_catalog.MODELS)
def test_bn_on_output_adds_a_last_norm(name):
    variables, trace = _trace(_model(name, tuple(nn_catalog.MODELS[name].positions)[0],
                                     bn_on_output=True, **SMALL[name]))
    out = {'simple_cnn': 'fc2', 'vgg': 'fc1', 'resnet': 'fc', 'mlp': 'fc4'}[name]
    assert [n for n, _ in trace][-2:] == [out, f'norm_{out}']
    assert 'bias' not in variables['params'][out]


def test_layer_names_are_stable_across_placements():
    for name, family in nn_catalog.MODELS.items():
        positions = family.positions
        layer_names = []
        for position in positions:
            variables = _trace(_model(name, position, **SMALL[name]), batch=2)[0]
            flat = jax.tree_util.tree_flatten_with_path(variables['params'])[0]
            layer_names.append({'/'.join(k.key for k in path[:-1]) for path, _ in flat
                                if 'kernel' in str(path[-1])})
        assert all(n == layer_names[0] for n in layer_names), name


def _count(name, position, shape=(28, 28, 1), **family):
    model = _model(name, position, **family)
    variables = jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), jnp.zeros((1, *shape)), train=False))
    return sum(x.size for x in jax.tree.leaves(variables['params']))


# Pinned at the default widths on 28x28x1 digits. BN adds 2 parameters per channel and
# drops the bias of a layer it follows directly or past a pool (before_act,
# after_pool_before_act, and the residual units);
# post-activation units also normalize their 2 projection shortcuts.
PARAMETER_COUNTS = {
    'simple_cnn': {'none': 824458, 'before_act': 824810, 'after_act': 825162,
                   'after_pool': 825162, 'after_pool_before_act': 824810},
    'vgg': {'none': 9224458, 'before_act': 9227210, 'after_act': 9229962,
            'after_pool': 9229962, 'after_pool_before_act': 9227210},
    'resnet': {'original': 272186, 'bn_after_addition': 272186, 'relu_before_addition': 272186,
               'relu_only_preactivation': 271994, 'full_preactivation': 272330, 'none': 271306},
    'mlp': {'none': 99710, 'before_act': 100010, 'after_act': 100310},
}


@pytest.mark.parametrize('name', nn_catalog.MODELS)
def test_parameter_counts_are_pinned(name):
    assert {p: _count(name, p) for p in nn_catalog.MODELS[name].positions} == \
        PARAMETER_COUNTS[name]


def test_parameter_counts_match_hand_computation_and_published_sizes():
    conv1, conv2, fc1, fc2 = 3 * 3 * 1 * 32, 3 * 3 * 32 * 64, 7 * 7 * 64 * 256, 256 * 10
    biases = 32 + 64 + 256
    assert _count('simple_cnn', 'none') == conv1 + conv2 + fc1 + fc2 + biases + 10
    assert _count('simple_cnn', 'before_act') == conv1 + conv2 + fc1 + fc2 + 2 * biases + 10
    mlp = 784 * 100 + 2 * 100 * 100 + 100 * 10
    assert _count('mlp', 'none') == mlp + 3 * 100 + 10
    # ResNet-20, original units, conv + BN projection shortcuts, one input channel, by hand.
    widths, total, previous = (16, 32, 64), 9 * 16 + 2 * 16, 16
    for width in widths:
        for _ in range(3):
            total += 9 * previous * width + 9 * width * width + 4 * width
            total += previous * width + 2 * width if previous != width else 0
            previous = width
    assert _count('resnet', 'original') == total + 64 * 10 + 10
    # The usual CIFAR VGG-16 with BN after each ReLU, conv biases and a 512->10 classifier
    # has 14,728,266 parameters (e.g. the widely used kuangliu/pytorch-cifar model).
    assert _count('vgg', 'after_act', (32, 32, 3), depth=16) == 14728266
    # He et al. 2016: ResNet-110 and ResNet-164 both have 1.7M parameters.
    assert round(_count('resnet', 'original', (32, 32, 3), depth=110) / 1e6, 1) == 1.7
    assert round(_count('resnet', 'full_preactivation', (32, 32, 3), depth=164,
                        block='bottleneck') / 1e6, 1) == 1.7


# A family setting outside its closed set, as the model refuses it and as validate does.
BAD_SETTINGS = [
    ('vgg', 'depth', 12, 'config.model.vgg.depth=12 is not valid; choose one of: 11, 13, 16, 19'),
    ('resnet', 'block', 'wide', "config.model.resnet.block='wide' is not valid; choose one of: "
                                'basic, bottleneck'),
    ('resnet', 'shortcut', 'conv', "config.model.resnet.shortcut='conv' is not valid; choose "
                                   'one of: projection, zero_pad'),
    ('mlp', 'activation', 'tanh', "config.model.mlp.activation='tanh' is not valid; choose "
                                  'one of: sigmoid, relu'),
]


@pytest.mark.parametrize('name, setting, value, message', BAD_SETTINGS)
def test_a_family_setting_outside_its_closed_set_lists_the_choices(name, setting, value, message):
    position = tuple(nn_catalog.MODELS[name].positions)[0]
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        _model(name, position, **{setting: value})
    config = default.get_config()  # model.name is simple_cnn: every family's section is checked
    config.model[name][setting] = value
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        schema.validate(config)


def test_unknown_model_lists_the_registry():
    config = default.get_config()
    config.model.name = 'alexnet'
    with pytest.raises(errors.ConfigError, match='choose one of: simple_cnn, vgg, resnet, mlp'):
        models.build_model(config.model, config.norm, 10)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    config = default.get_config()
    config.model.dtype = 'bfloat16'
    config.norm.stats_scope = 'per_device'
    model = models.build_model(config.model, config.norm, 10)
    x = jnp.ones((2, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables['params']))
    assert model.apply(variables, x, train=False).dtype == jnp.float32
