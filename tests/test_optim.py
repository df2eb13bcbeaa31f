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
