"""WORKSPACE's "Extending" recipe, followed to the letter: a toy per-example norm kind and a
toy model family, each a table entry in bn_study/nn/catalog.py plus its module (here, this
file), validate, build and train one pmapped step through the real code path."""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import jax_utils

from bn_study import errors, schema
from bn_study.nn import blocks, checks, models, norms, placement
from bn_study.nn import catalog as nn_catalog
from bn_study.training import loop, norm_record, optim

# ---- The toy norm kind's module: its layer and the function its table entry names --------

class RMSNorm(nn.Module):
    """Each example divided by its root mean square over all its channels and positions (no
    centring), then the per-channel affine parameters."""
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    zero_scale: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        del train  # each example's own statistics, in training and at test time alike
        features = x.shape[-1]
        mean_sq = jnp.square(x.astype(jnp.float32)).mean(tuple(range(1, x.ndim)), keepdims=True)
        y = x * jax.lax.rsqrt(mean_sq + self.epsilon)
        if self.use_scale:
            init = nn.initializers.zeros if self.zero_scale else nn.initializers.ones
            y = y * self.param('scale', init, (features,), jnp.float32)
        if self.use_bias:
            y = y + self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
        y = y.astype(self.dtype)
        norms.sow_signal(self, x, y)
        return y


def rms_norm(norm: norms.NormFactory, name: str, zero_scale: bool) -> RMSNorm:
    return RMSNorm(**norm.affine(name, zero_scale))


# ---- The toy family's module -----------------------------------------------------------

class ToyNet(nn.Module):
    """One hidden dense block, with the norm where `bn_position` says, then the logits."""
    norm: norms.NormFactory
    bn_position: str = 'before_act'
    bn_on_output: bool = False
    width: int = 16
    activation: str = 'relu'
    num_classes: int = 10
    dtype: Any = jnp.float32

    def __post_init__(self):
        checks.check_family('toy', self)
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.astype(self.dtype).reshape((x.shape[0], -1))
        dense = functools.partial(nn.Dense, self.width, dtype=self.dtype)
        activation = nn_catalog.resolve(nn_catalog.ACTIVATIONS[self.activation])
        ops = placement.layer_ops('toy', checks.module_settings(self), self.bn_position,
                                  self.bn_on_output)
        x = blocks.plain_block(self, x, 'fc1', dense, self.norm, ops['fc1'], activation,
                               train=train)
        return blocks.output_layer(self, x, 'fc2', self.num_classes, self.norm,
                                   'norm' in ops['fc2'], self.dtype, train)


def toy_layers(**_) -> tuple:
    """The toy family's layers from its settings, as (name, kind in catalog.LAYER_KINDS)."""
    return (('fc1', 'dense'), ('fc2', 'output'))


# ---- The table entries, as the recipe adds them ----------------------------------------

@pytest.fixture
def toy_norm_kind(monkeypatch):
    monkeypatch.setitem(nn_catalog.NORM_KINDS, 'rms', nn_catalog.NormKind(
        f'{__name__}:rms_norm', 'per_example', cancels_preceding_bias=False))


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setitem(nn_catalog.MODELS, 'toy', nn_catalog.Family(
        f'{__name__}:ToyNet', nn_catalog.MLP_POSITIONS, {'activation': nn_catalog.ACTIVATIONS},
        layers=f'{__name__}:toy_layers'))


def _train_one_step(config, num_devices=4, per_device=2):
    """One step of the training loop's own pmapped step over a [devices, per_device, H, W, C]
    batch; returns the parameters before and after, and the step's metrics."""
    devices = jax.devices()[:num_devices]
    model = models.build_model(config.model, config.norm, num_classes=10)
    schedule = optim.make_schedule(config.schedule, 1.0, steps_per_epoch=10, total_steps=100)
    state = loop.create_train_state(
        model, jax.random.PRNGKey(0), (28, 28, 1),
        lambda p: optim.make_optimizer(config.optimizer, schedule, p))
    before = jax.tree.map(np.asarray, state.params)
    rng = np.random.default_rng(0)
    batch = {'image': rng.normal(size=(num_devices, per_device, 28, 28, 1)).astype(np.float32),
             'label': rng.integers(0, 10, (num_devices, per_device)).astype(np.int32)}
    state, metrics = loop.pmapped_train_step(devices)(jax_utils.replicate(state, devices), batch)
    return before, loop.unreplicate(state), loop.unreplicate(metrics)


def _moved(before, after) -> list[float]:
    return jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), after, before))


def narrow_seed_cnn_trains_a_step(make_config, **overrides):
    """A narrow seed CNN with `overrides`, validated, after one pmapped step, which must be
    finite and move every parameter; returns (config, state)."""
    config = make_config(schedule__warmup_epochs=0.0, model__simple_cnn__conv_features=(4, 8),
                         model__simple_cnn__hidden_features=16, **overrides)
    schema.validate(config)
    before, state, metrics = _train_one_step(config)
    assert bool(metrics['finite']) and np.isfinite(metrics['loss'])
    assert min(_moved(before, state.params)) > 0  # every parameter trained
    return config, state


def test_a_new_per_example_norm_kind_validates_builds_trains_and_is_described(
        make_config, toy_norm_kind):
    config, state = narrow_seed_cnn_trains_a_step(make_config, norm__kind='rms')
    assert set(state.params['norm_conv1']) == {'scale', 'bias'}
    assert 'bias' in state.params['conv1']  # it does not cancel a preceding bias
    assert not jax.tree.leaves(state.batch_stats)  # per-example: no running statistics
    assert norm_record.describe(config, placement.has_norm_layers(config.model), 4) == {
        'kind': 'rms', 'num_devices': 4, 'epsilon': config.norm.epsilon,
        'use_scale': True, 'use_bias': True, 'zero_init_last_scale': False,
        'scope': 'per_example', 'examples_per_statistic': 1}

    config.norm.kind = 'rsm'
    with pytest.raises(errors.ConfigError, match="config.norm.kind='rsm' is not valid; choose "
                                                 'one of: batch, layer, group, instance, none, rms'):
        schema.validate(config)


def test_a_new_family_validates_builds_and_trains(make_config, toy_family):
    config = make_config(model__name='toy', model__bn_position='after_act',
                         schedule__warmup_epochs=0.0)
    with pytest.raises(errors.ConfigError, match='config.model.toy is missing'):
        schema.validate(config)  # every setting in the config: no silent module defaults
    with config.model.unlocked():  # its settings in config.model.toy, as configs/default.py would
        config.model.toy = ml_collections.ConfigDict({'width': 8, 'activation': 'sigmoid'})
    schema.validate(config)
    before, state, metrics = _train_one_step(config)
    assert bool(metrics['finite']) and np.isfinite(metrics['loss'])
    assert min(_moved(before, state.params)) > 0
    assert state.params['fc1']['kernel'].shape == (28 * 28, 8)
    assert state.batch_stats['norm_fc1']['mean'].shape == (8,)
    assert np.abs(state.batch_stats['norm_fc1']['mean']).max() > 0  # global BN statistics moved

    config.model.toy.activation = 'tanh'
    with pytest.raises(errors.ConfigError, match="config.model.toy.activation='tanh' is not "
                                                 'valid; choose one of: sigmoid, relu'):
        schema.validate(config)
    config.model.toy.activation = 'relu'
    config.model.bn_position = 'after_pool'
    with pytest.raises(errors.ConfigError, match=r"'after_pool' is not valid for model toy; "
                                                 r'choose a position for every layer \(none, '
                                                 r'before_act, after_act\)'):
        schema.validate(config)
    with pytest.raises(errors.ConfigError, match='is not valid for model toy'):
        models.build_model(config.model, config.norm, num_classes=10)
    config.model.name = 'toyy'
    with pytest.raises(errors.ConfigError,
                       match='choose one of: simple_cnn, vgg, resnet, mlp, toy'):
        schema.validate(config)
