"""Schedules, optimizers and which parameters weight decay touches."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from bn_study import errors
from bn_study.nn import catalog as nn_catalog
from bn_study.nn import norms, simple_cnn
from bn_study.training import catalog, optim
from configs import default


def _params(bn_position='before_act'):
    norm = norms.make_norm(default.get_config().norm, jnp.float32)
    model = simple_cnn.SimpleCNN(norm=norm, bn_position=bn_position)
    return model.init(jax.random.PRNGKey(0), jnp.ones((1, 28, 28, 1)), train=False)['params']


def test_weight_decay_mask_by_parameter_role():
    params = _params('after_act')  # layers with biases and norms with scale and bias
    masks = {w: optim.weight_decay_mask(params, w) for w in ('all', 'all_but_norm',
                                                               'kernels_only')}
    assert all(jax.tree.leaves(masks['all']))
    assert masks['all_but_norm']['conv1'] == {'kernel': True, 'bias': True}
    assert masks['all_but_norm']['norm_conv1'] == {'scale': False, 'bias': False}
    assert masks['kernels_only']['conv1'] == {'kernel': True, 'bias': False}
    assert masks['kernels_only']['norm_fc1'] == {'scale': False, 'bias': False}


def _schedule(**kw):
    config = ml_collections.ConfigDict(default.get_config().schedule.to_dict())
    config.update(kw)
    return optim.make_schedule(config, 0.1, steps_per_epoch=10, total_steps=100)


def test_warmup_then_cosine_reaches_zero():
    s = _schedule(name='cosine', warmup_epochs=1.0)
    assert float(s(0)) == 0.0
    assert float(s(5)) == pytest.approx(0.05)
    assert float(s(10)) == pytest.approx(0.1)
    assert float(s(55)) == pytest.approx(0.05, abs=1e-6)  # half-way through the cosine
    assert float(s(100)) == pytest.approx(0.0, abs=1e-7)


def test_step_decay_at_epoch_boundaries():
    s = _schedule(name='step', warmup_epochs=0.0, step_boundaries_epochs=(5, 8),
                  step_decay_factor=0.1)
    assert [float(s(t)) for t in (0, 49, 50, 79, 80, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_decay_spares_norm_params_under_all_but_norm():
    """With a zero gradient, only decayed parameters move."""
    params = _params('before_act')
    config = default.get_config().optimizer
    config.update({'weight_decay': 0.1, 'weight_decay_on': 'all_but_norm', 'momentum': 0.0,
                   'learning_rate': 1.0})
    tx = optim.make_optimizer(config, optax.constant_schedule(1.0), params)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(updates['conv1']['kernel'], -0.1 * params['conv1']['kernel'])
    assert not np.any(updates['norm_conv1']['scale'])
    config.name = 'adamw'
    tx = optim.make_optimizer(config, optax.constant_schedule(1.0), params)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(updates['fc2']['kernel'], -0.1 * params['fc2']['kernel'],
                               rtol=1e-6)
    assert not np.any(updates['norm_fc1']['bias'])


def test_every_catalog_entry_names_its_implementation_and_a_bad_name_lists_the_table():
    """Training's closed sets are declared once (training/catalog.py): each entry's function
    imports, and validation and dispatch both read the table."""
    tables = {'optimizer.name': catalog.OPTIMIZERS, 'schedule.name': catalog.SCHEDULES,
              'optimizer.weight_decay_on': catalog.WEIGHT_DECAY_ON,
              'eval.stats': catalog.EVAL_STATS}
    for path, table in tables.items():
        for name in table:
            assert callable(catalog.implementation(table, path, name)), (path, name)
        with pytest.raises(errors.ConfigError,
                           match=f'config.{path}=.nope. is not valid; choose one of: '
                                 f'{", ".join(table)}$'):
            catalog.implementation(table, path, 'nope')
    assert list(catalog.OPTIMIZERS) == ['sgd', 'adam', 'adamw']  # the order messages use
    for name, augmentation in catalog.AUGMENTATIONS.items():
        assert augmentation is not None or name == catalog.STANDARD_AUGMENTATION
    for info in catalog.DATASETS.values():  # 'standard' means a concrete augmentation
        assert catalog.AUGMENTATIONS[info.standard_augment] is not None


def test_the_training_catalog_imports_no_heavy_module():
    """bn_study.schema validates configs against it, so it stays light."""
    script = ('import sys, bn_study.training.catalog; '
              'print(sorted({"jax", "flax", "optax", "tensorflow", "orbax"} & set(sys.modules)))')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == '[]'


def _clipped_update(clipping, params, grads):
    """One SGD step (rate 1, no momentum, no decay) after adaptive gradient clipping."""
    config = ml_collections.ConfigDict(default.get_config().optimizer.to_dict())
    config.update(learning_rate=1.0, momentum=0.0, weight_decay=0.0, agc_clipping=clipping)
    tx = optim.make_optimizer(config, lambda count: 1.0, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return jax.tree.map(lambda u: -np.asarray(u), updates)


def test_adaptive_clipping_follows_the_unit_wise_rule_on_a_hand_made_example():
    # A dense kernel [in, out]: unit 0's weights (3, 4) have norm 5, unit 1's are zero (so
    # eps = 1e-3 stands in). Gradients: unit 0 (0.6, 0.8), norm 1; unit 1 (0.3, 0.4), 0.5.
    # With clipping 0.1, unit 0 may have at most 0.5 -> (0.3, 0.4); unit 1 at most 1e-4 ->
    # (6e-5, 8e-5). The bias vector is one unit: its gradient's norm 1.00125 is over
    # 0.1 * |(1, -2)| = 0.22361, so it is scaled by 0.22361 / 1.00125. The logits layer,
    # built last, is never clipped.
    params = {'hidden': {'kernel': jnp.array([[3.0, 0.0], [4.0, 0.0]]),
                         'bias': jnp.array([1.0, -2.0])},
              'logits': {'kernel': jnp.array([[0.1], [0.1]])}}
    grads = {'hidden': {'kernel': jnp.array([[0.6, 0.3], [0.8, 0.4]]),
                        'bias': jnp.array([0.05, 1.0])},
             'logits': {'kernel': jnp.array([[50.0], [50.0]])}}
    step = _clipped_update(0.1, params, grads)
    np.testing.assert_allclose(step['hidden']['kernel'], [[0.3, 6e-5], [0.4, 8e-5]], rtol=1e-5)
    scale = 0.1 * np.sqrt(5.0) / np.hypot(0.05, 1.0)
    np.testing.assert_allclose(step['hidden']['bias'], [0.05 * scale, scale], rtol=1e-5)
    np.testing.assert_array_equal(step['logits']['kernel'], [[50.0], [50.0]])
    off = _clipped_update(0.0, params, grads)  # 0 disables: the gradient as it is
    jax.tree.map(np.testing.assert_array_equal, off, jax.tree.map(np.asarray, grads))


@pytest.mark.parametrize('name, logits', [('simple_cnn', 'fc2'), ('vgg', 'fc1'),
                                          ('resnet', 'fc'), ('mlp', 'fc4')])
def test_the_logits_layer_is_the_one_left_unclipped_in_every_family(name, logits):
    from tests.test_models import SMALL, _model
    first_position = tuple(nn_catalog.MODELS[name].positions)[0]
    model = _model(name, first_position, bn_on_output=True, **SMALL[name])
    params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 28, 28, 1)), train=False)['params']
    assert optim.logits_layer(params) == logits  # though a norm on the logits comes after it
    mask = optim.clipping_mask(params)
    assert not any(jax.tree.leaves(mask[logits]))
    assert all(jax.tree.leaves({k: v for k, v in mask.items() if k != logits}))



@pytest.mark.parametrize('overrides, message', [
    ({'optimizer.agc_clipping': -0.01}, 'config.optimizer.agc_clipping=-0.01 must be 0 or more'),
    ({'optimizer.agc_eps': 0.0}, 'config.optimizer.agc_eps=0.0 must be positive'),
])
def test_a_clipping_setting_that_makes_no_sense_is_refused(overrides, message):
    from bn_study import schema
    from bn_study.studies import declare
    with pytest.raises(errors.ConfigError, match=message):
        schema.validate(declare.apply_overrides(default.get_config(), overrides))
