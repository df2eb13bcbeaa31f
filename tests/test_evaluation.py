"""Evaluation statistics (EMA, PreciseBN, test batch) and signal diagnostics."""

import jax
import numpy as np
import pytest
from flax import jax_utils

from bn_study import records
from bn_study.nn import models
from bn_study.nn.norms import BATCH_AXIS
from bn_study.training import diagnostics, evaluation, loop, optim
from bn_study.training.parallel import first_replica


def _mlp_state(make_config, **overrides):
    """A small BN MLP (norm inputs are the dense layers' outputs, easy to read back)."""
    config = make_config(model__name='mlp', model__mlp__hidden_features=(16, 12),
                         model__mlp__activation='relu', **overrides)
    model = models.build_model(config.model, config.norm, num_classes=10)
    schedule = optim.make_schedule(config.schedule, 1.0, steps_per_epoch=10, total_steps=100)
    return loop.create_train_state(model, jax.random.PRNGKey(0), (28, 28, 1),
                                    lambda p: optim.make_optimizer(config.optimizer, schedule, p))


def _batches(count, size, num_devices, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(0.5, 2.0, size=(count, num_devices, size // num_devices, 28, 28, 1))
    return [{'image': x.astype(np.float32),
             'label': np.zeros(x.shape[:2], np.int32),
             'mask': np.ones(x.shape[:2], np.float32)} for x in images]


@pytest.mark.parametrize('stats_scope', ['global', 'per_device', 'ghost'])
def test_precise_bn_over_a_split_equals_its_exact_population_statistics(make_config,
                                                                        stats_scope):
    state = _mlp_state(make_config, model__bn_position='before_act',
                       norm__stats_scope=stats_scope, norm__ghost_batch_size=4)
    devices = jax.devices()[:4]
    batches = _batches(6, 16, 4)
    replicated = jax_utils.replicate(state, devices)
    p_moments = jax.pmap(evaluation.batch_moments_step, axis_name=BATCH_AXIS, devices=devices)
    precise = loop.unreplicate(
        evaluation.precise_batch_stats(p_moments, replicated, batches, in_flight=2))

    # Directly: every norm's input over the whole split, each example computed in train mode
    # within its own normalization batch (16 examples, 4 per device, or ghosts of 4).
    size = {'global': 16, 'per_device': 4, 'ghost': 4}[stats_scope]
    inputs = {'fc1': [], 'fc2': []}
    images = np.concatenate([b['image'].reshape(-1, 28, 28, 1) for b in batches])
    for group in images.reshape(-1, size, 28, 28, 1):
        _, out = _global_forward(state, group)
        for layer in inputs:
            inputs[layer].append(np.asarray(out['intermediates'][f'{layer}_out'][0], np.float64))
    for layer, groups in inputs.items():
        values = np.concatenate(groups)
        np.testing.assert_allclose(precise[f'norm_{layer}']['mean'], values.mean(0),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(precise[f'norm_{layer}']['var'], values.var(0),
                                   rtol=1e-4, atol=1e-5)
        # Not the average of the normalization batches' own variances (what a momentum-free
        # average of batch variances would give): the spread between batches counts too.
        within = np.mean([g.var(0) for g in groups], axis=0)
        assert np.all(precise[f'norm_{layer}']['var'] > within)


def _global_forward(state, group):
    """Train-mode forward of one normalization batch on one device (a size-1 pmap binds
    the batch axis that global statistics pool over)."""
    def forward(x):
        return state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats}, x,
                              train=True, mutable=['batch_stats', 'intermediates'])
    logits, out = jax.pmap(forward, axis_name=BATCH_AXIS, devices=jax.devices()[:1])(group[None])
    return logits, jax.tree.map(lambda x: x[0], out)


@pytest.mark.parametrize('stats_scope, group', [('global', 8), ('per_device', 4), ('ghost', 2)])
def test_batch_statistics_evaluation_normalizes_each_test_batch_by_itself(make_config,
                                                                          stats_scope, group):
    state = _mlp_state(make_config, model__bn_position='after_act',
                       norm__stats_scope=stats_scope, norm__ghost_batch_size=2)
    devices = jax.devices()[:2]
    batch = _batches(1, 8, 2)[0]
    replicated = jax_utils.replicate(state, devices)
    p_batch = jax.pmap(evaluation.batch_stats_eval_step, axis_name=BATCH_AXIS, devices=devices)
    p_ema = jax.pmap(evaluation.eval_step, axis_name=BATCH_AXIS, devices=devices)
    batch_sums = jax.tree.map(lambda x: float(x[0]), p_batch(replicated, batch))
    ema_sums = jax.tree.map(lambda x: float(x[0]), p_ema(replicated, batch))
    # Expected: each normalization group (the global batch, a device's slice, a ghost batch)
    # run through the network on its own.
    images = batch['image'].reshape(-1, group, 28, 28, 1)
    logits = np.concatenate([_global_forward(state, g)[0][0] for g in images])
    expected = evaluation.cross_entropy(logits, np.zeros(8, np.int32)).sum()
    assert batch_sums['loss'] == pytest.approx(float(expected), rel=1e-5)
    assert batch_sums['loss'] != pytest.approx(ema_sums['loss'], rel=1e-3)


def test_signal_diagnostics_report_each_norm_layer(make_config):
    state = _mlp_state(make_config, model__bn_position='before_act')
    devices = jax.devices()[:4]
    batch = _batches(1, 16, 4)[0]
    percentiles = (15, 50, 85)
    p_signal = jax.pmap(diagnostics.make_signal_step(percentiles), axis_name=BATCH_AXIS,
                        devices=devices)
    running = jax.tree.map(lambda v: np.full_like(v, 3.0), state.batch_stats)
    replicated = jax_utils.replicate(state.replace(batch_stats=running), devices)
    rows = diagnostics.rows(7, first_replica(p_signal(replicated, batch)),
                            first_replica(replicated.batch_stats), percentiles)
    assert [r['layer'] for r in rows] == ['norm_fc1', 'norm_fc2', 'act_fc1', 'act_fc2']
    _, out = _global_forward(state, batch['image'].reshape(16, 28, 28, 1))
    # BN before the activation: the sigmoid's input is the norm's output; its first unit's
    # percentiles over all 16 examples, gathered from the 4 devices.
    sigmoid_input = np.asarray(out['intermediates']['norm_fc2_out'][0])[:, 0]
    expected = np.percentile(sigmoid_input, percentiles)
    assert [rows[3][f'p{q}'] for q in percentiles] == pytest.approx(expected, abs=1e-5)
    fc1 = np.asarray(out['intermediates']['fc1_out'][0], np.float64)
    row = rows[0]
    assert row['step'] == 7
    assert row['input_mean'] == pytest.approx(fc1.mean(), abs=1e-5)
    assert row['input_var'] == pytest.approx(fc1.var(), rel=1e-4)
    assert row['input_channel_var'] == pytest.approx(fc1.var(0).mean(), rel=1e-4)
    assert row['input_channel_var'] < row['input_var']  # channel means differ
    assert row['output_mean'] == pytest.approx(0.0, abs=1e-5)  # BN at init: scale 1, bias 0
    assert row['output_channel_var'] == pytest.approx(1.0, abs=1e-3)
    # Running statistics of 3 in each of fc1's 16 channels (train mode leaves them be here).
    assert row['running_mean_norm'] == pytest.approx(12.0)
    assert row['running_var_norm'] == pytest.approx(12.0)


def test_a_run_reports_every_evaluation_kind_and_its_diagnostics(make_config, tmp_path):
    config = make_config(num_epochs=1, eval__stats=('precise', 'ema', 'batch'),
                         eval__precise_bn_examples=500, diagnostics__every_steps=10)
    loop.train_and_evaluate(config, str(tmp_path))
    summary = records.read_summary(str(tmp_path))
    assert summary['final_test_accuracy'] == summary['final_test_accuracy_precise']
    for kind in ('ema', 'precise', 'batch'):
        assert 0.8 < summary[f'final_test_accuracy_{kind}'] <= 1.0
    assert summary['normalization']['eval_stats'] == {
        'precise': {'examples': 512}, 'ema': {'momentum': 0.9},
        'batch': {'examples_per_statistic': 128}}
    rows = records.read_metrics(str(tmp_path), records.DIAGNOSTICS_FILE)
    assert sorted({r['step'] for r in rows}) == [10, 20, 28]
    assert {r['layer'] for r in rows} == {'norm_conv1', 'norm_conv2', 'norm_fc1'}
