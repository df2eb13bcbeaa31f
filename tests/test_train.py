"""The pmapped train step across device counts, and train_and_evaluate end to end."""

import json
import os

import jax
import numpy as np
import pytest
from flax import jax_utils

from bn_study import errors, records
from bn_study.nn import models
from bn_study.training import data, evaluation, loop, optim, parallel


def _state_and_batch(make_config, bn_position='before_act', batch=32, stats_scope='global',
                     **overrides):
    """State and batch for the cross-device tests, computed in float64 (call under x64).

    In float32, ReLU kinks and max-pool near-ties turn rounding differences (any change of
    reduction order, even permuting the batch on one device) into gradient differences of
    ~1e-4 in single elements; float64 makes the comparison test the semantics, not rounding.
    """
    overrides = {'model__bn_position': bn_position, 'norm__stats_scope': stats_scope,
                 'schedule__warmup_epochs': 0.0,  # so the very first step moves params
                 **overrides}
    config = make_config(**overrides)
    config.model.dtype = 'float64'  # test only: nn_catalog.DTYPES does not offer it
    model = models.build_model(config.model, config.norm, num_classes=10)
    schedule = optim.make_schedule(config.schedule, 1.0, steps_per_epoch=10, total_steps=100)
    state = loop.create_train_state(
        model, jax.random.PRNGKey(0), (28, 28, 1),
        lambda p: optim.make_optimizer(config.optimizer, schedule, p))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch, 28, 28, 1))
    labels = rng.integers(0, 10, batch).astype(np.int32)
    return state, {'image': images, 'label': labels}


def _step(state, batch, num_devices, steps=3):
    devices = jax.devices()[:num_devices]
    shard = lambda x: x.reshape(num_devices, -1, *x.shape[1:])
    p_step = jax.pmap(loop.train_step, axis_name=loop.BATCH_AXIS, devices=devices)
    state = jax_utils.replicate(state, devices)
    for _ in range(steps):
        state, metrics = p_step(state, jax.tree.map(shard, batch))
    return loop.unreplicate(state), loop.unreplicate(metrics)


@pytest.mark.parametrize('bn_position', ['before_act', 'after_pool', 'none'])
@jax.enable_x64(True)
def test_four_devices_equal_one_device_on_the_concatenated_batch(make_config, bn_position):
    state, batch = _state_and_batch(make_config, bn_position)
    compare = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # After one step the SGD momentum buffer is exactly the (decayed) gradient.
    jax.tree.map(compare, _step(state, batch, 4, steps=1)[0].opt_state,
                 _step(state, batch, 1, steps=1)[0].opt_state)
    # After three, momentum, parameters and running statistics have all moved.
    four, metrics_four = _step(state, batch, 4)
    one, metrics_one = _step(state, batch, 1)
    jax.tree.map(compare, four.params, one.params)
    jax.tree.map(compare, four.batch_stats, one.batch_stats)
    jax.tree.map(compare, four.opt_state, one.opt_state)  # momentum buffers hold the gradients
    jax.tree.map(compare, metrics_four, metrics_one)
    # Guard against a vacuous pass: the step really changed parameters and statistics.
    assert np.abs(four.params['conv1']['kernel'] - state.params['conv1']['kernel']).max() > 1e-4
    if bn_position != 'none':
        assert np.abs(four.batch_stats['norm_conv1']['mean']).max() > 1e-4


# Each family, and ghost batches on the seed CNN. (Per-example norms, group and layer, pool
# nothing across devices; ResNet's zero-init scale is tested in test_models.py. Both were
# cases here until the CI budget needed their 65 s.)
FAMILIES = {
    'vgg11': ('before_act', {'model__name': 'vgg', 'model__vgg__width': 4}),
    'resnet11_bottleneck_preact': ('full_preactivation', {
        'model__name': 'resnet', 'model__resnet__depth': 11, 'model__resnet__block': 'bottleneck',
        'model__resnet__width': 4}),
    'mlp': ('before_act', {'model__name': 'mlp', 'model__mlp__hidden_features': (16, 16, 16)}),
    'ghost_batches_of_8': ('before_act', {'norm__stats_scope': 'ghost',
                                          'norm__ghost_batch_size': 8}),
}


@pytest.mark.parametrize('family', FAMILIES)
@jax.enable_x64(True)
def test_every_family_trains_alike_on_four_devices_and_one(make_config, family):
    bn_position, overrides = FAMILIES[family]
    state, batch = _state_and_batch(make_config, bn_position, **overrides)
    four, metrics_four = _step(state, batch, 4)
    one, metrics_one = _step(state, batch, 1)
    compare = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    jax.tree.map(compare, (four.params, four.batch_stats, metrics_four),
                 (one.params, one.batch_stats, metrics_one))
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), four.params, state.params)
    assert min(jax.tree.leaves(moved)) > 0  # every parameter trains, zero-init ones included


@jax.enable_x64(True)
def test_per_device_statistics_average_the_slices_own_updates(make_config):
    """Per-device BN: each slice normalises itself; the step equals the mean of four
    one-slice steps (gradients and running averages both enter linearly)."""
    state, batch = _state_and_batch(make_config, stats_scope='per_device')
    four, _ = _step(state, batch, 4, steps=1)
    slices = [_step(state, jax.tree.map(lambda x: x[i * 8:(i + 1) * 8], batch), 1, steps=1)[0]
              for i in range(4)]
    mean_of = lambda *xs: np.mean(np.stack(xs), axis=0)
    compare = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    jax.tree.map(compare, four.batch_stats, jax.tree.map(mean_of, *[s.batch_stats for s in slices]))
    jax.tree.map(compare, four.params, jax.tree.map(mean_of, *[s.params for s in slices]))
    pooled, _ = _step(_state_and_batch(make_config)[0], batch, 4, steps=1)
    assert np.abs(four.params['fc2']['kernel'] - pooled.params['fc2']['kernel']).max() > 1e-6


@jax.enable_x64(True)
def test_eval_step_sums_agree_across_device_counts(make_config):
    state, batch = _state_and_batch(make_config)
    batch['mask'] = np.r_[np.ones(28), np.zeros(4)].astype(np.float32)
    sums = {}
    for n in (1, 4):
        devices = jax.devices()[:n]
        p_eval = jax.pmap(evaluation.eval_step, axis_name=loop.BATCH_AXIS, devices=devices)
        out = p_eval(jax_utils.replicate(state, devices),
                     jax.tree.map(lambda x: x.reshape(n, -1, *x.shape[1:]), batch))
        sums[n] = jax.tree.map(lambda x: float(x[0]), out)
    assert sums[1]['count'] == sums[4]['count'] == 28
    assert sums[1]['loss'] == pytest.approx(sums[4]['loss'], rel=1e-5)
    assert sums[1]['correct'] == sums[4]['correct']


def test_short_run_learns_and_writes_its_record(make_config, tmp_path):
    # Bitwise repetition (a separate process against this one) is checked by
    # tests/test_checkpoint.py's kill-and-resume test.
    config = make_config(num_epochs=2)
    loop.train_and_evaluate(config, str(tmp_path / 'a'))
    summary = records.read_summary(str(tmp_path / 'a'))
    assert summary['status'] == records.COMPLETE
    assert summary['final_test_accuracy'] >= 0.90
    # 400 of the 4,000 training digits are held out for validation, never trained on.
    assert (summary['train_examples'], summary['validation_examples']) == (3600, 400)
    assert summary['steps'] == 2 * (3600 // 128)
    # The shorthand is recorded as what it built, layer by layer.
    assert summary['placement'] == {'conv1': 'before_act', 'conv2': 'before_act',
                                    'fc1': 'before_act', 'fc2': 'none'}
    assert summary['normalization'] == {
        'kind': 'batch', 'scope': 'global', 'examples_per_statistic': 128, 'num_devices': 4,
        'momentum': 0.9, 'epsilon': 1e-5, 'use_scale': True, 'use_bias': True,
        'zero_init_last_scale': False, 'eval_stats': {'ema': {'momentum': 0.9}}}
    rows = records.read_metrics(str(tmp_path / 'a'))
    assert [r['epoch'] for r in rows] == [1, 2]
    assert rows[-1]['test_accuracy'] == summary['final_test_accuracy']
    assert rows[-1]['val_accuracy'] == summary['final_val_accuracy'] >= 0.90
    # The epoch is selected on validation (the first best), and its test accuracy reported.
    selected = max(rows, key=lambda r: r['val_accuracy'])
    assert summary['selected_epoch'] == selected['epoch']
    assert summary['selected_test_accuracy'] == selected['test_accuracy']
    assert not any(key.startswith('best_') for key in summary)  # nothing chosen on test
    assert summary['initial_val_loss'] > 2 * summary['final_val_loss']
    with open(tmp_path / 'a' / records.CONFIG_FILE) as f:
        assert json.load(f)['model']['bn_position'] == 'before_act'
    assert any(n.startswith('events.out.tfevents') for n in os.listdir(tmp_path / 'a'))

    with pytest.raises(errors.WorkdirError, match='already holds a complete run'):
        loop.train_and_evaluate(config, str(tmp_path / 'a'))


@pytest.mark.parametrize('stats_scope, examples', [('per_device', 16), ('ghost', 8)])
def test_the_normalization_batch_is_recorded(make_config, tmp_path, stats_scope, examples):
    config = make_config(num_epochs=1, norm__stats_scope=stats_scope, batch_size=64,
                         norm__ghost_batch_size=8, eval__stats=('batch',))
    loop.train_and_evaluate(config, str(tmp_path))
    stats = records.read_summary(str(tmp_path))['normalization']
    assert (stats['scope'], stats['examples_per_statistic'], stats['num_devices']) == (
        stats_scope, examples, 4)
    assert stats['eval_stats'] == {'batch': {'examples_per_statistic': examples}}


def test_a_crash_mid_run_is_recorded_as_failed(make_config, tmp_path, monkeypatch):
    real = data.TrainFeed.batches

    def breaking(feed, *args, **kwargs):
        batches = real(feed, *args, **kwargs)
        for _ in range(40):  # past the first epoch (28 steps), into the second
            yield next(batches)
        raise OSError('disk vanished')
    monkeypatch.setattr(data.TrainFeed, 'batches', breaking)
    with pytest.raises(OSError):
        loop.train_and_evaluate(make_config(num_epochs=3), str(tmp_path))
    summary = records.read_summary(str(tmp_path))
    assert summary['status'] == records.FAILED
    assert summary['epochs_completed'] == 1 and 'disk vanished' in summary['error']
    assert len(records.read_metrics(str(tmp_path))) == 1  # the finished epoch is kept


@pytest.mark.parametrize('overrides, message', [
    ({'batch_size': 130}, 'does not split evenly over 4 devices'),
    ({'batch_size': 96, 'eval__batch_size': 50, 'num_devices': 3},
     'eval.batch_size=50 does not split'),
    ({'num_devices': 5}, 'only 4 local devices'),
    ({'optimizer__name': 'lamb'}, 'choose one of: sgd, adam, adamw'),
    ({'data__name': 'imagenet'}, 'neither one of: mnist_5k, mnist, fashion_mnist'),
    ({'norm__stats_scope': 'sync'}, 'choose one of: global, per_device, ghost'),
    ({'norm__kind': 'weight'}, 'choose one of: batch, layer, group, instance, none'),
    ({'model__name': 'resnet'}, "'before_act' is not valid for model resnet; choose one of: "
                                'original, bn_after_addition'),
    # Per-layer placements: an unknown layer, a missing one, a pool position on a layer
    # without a pool, an unknown preset (tests/test_placement.py has every message).
    ({'model__bn_position': 'conv1=none,conv2=none,fc1=none,fc2=none,fc3=none'},
     "names layer 'fc3', which simple_cnn does not have; its layers: conv1, conv2, fc1, fc2"),
    ({'model__bn_position': 'conv1=after_act,conv2=after_act,fc1=after_act'},
     'leaves out fc2'),
    ({'model__bn_position': 'conv1=none,conv2=none,fc1=after_pool,fc2=none'},
     r"gives layer fc1 the position 'after_pool', which it cannot take \(it has no pool\)"),
    ({'model__bn_position': 'airbnch'}, r'a preset \(so_answer, bn_paper, airbench, none\)'),
    ({'norm__stats_scope': 'ghost', 'norm__ghost_batch_size': 12},
     'ghost_batch_size=12 does not divide the per-device batch of 32; choose one of: 1, 2, 4, '
     '8, 16, 32'),
    ({'norm__kind': 'group', 'norm__num_groups': 5}, 'num_groups=5 does not divide the 32 '
                                                     'channels of norm_conv1'),
    ({'norm__kind': 'instance'}, 'kind=instance would normalize single values of the dense '
                                 'layer norm_fc1'),
    ({'eval__stats': ('ema', 'ema')}, 'must list one or more distinct values'),
    ({'eval__stats': ('running',)}, 'choose one of: ema, precise, batch'),
    ({'norm__zero_init_last_scale': True}, 'needs a residual branch'),
    ({'num_devices': -1}, 'num_devices=-1 must be 0'),
    ({'steps_in_flight': -2}, 'steps_in_flight=-2 must be 0 or more'),
    ({'diagnostics__percentiles': (15, 150)}, r'has 150; percentiles lie in 0\.\.100'),
    ({'diagnostics__percentiles': (15, 'median')}, r"has 'median'; percentiles lie in 0"),
    ({'schedule__name': 'step', 'schedule__step_boundaries_epochs': (3, 3)},
     'must be strictly increasing'),
    ({'schedule__step_boundaries_epochs': (9,)}, 'before the last epoch'),
])
def test_bad_config_fails_before_writing(make_config, tmp_path, overrides, message):
    with pytest.raises(errors.ConfigError, match=message):
        loop.train_and_evaluate(make_config(**overrides), str(tmp_path / 'run'))
    assert not (tmp_path / 'run').exists()


def test_a_diverging_run_stops_with_its_step_and_last_finite_metrics(make_config, tmp_path):
    config = make_config(num_epochs=3, model__bn_position='none', optimizer__learning_rate=1e3,
                         schedule__warmup_epochs=0.0)
    state = loop.train_and_evaluate(config, str(tmp_path))  # no exception: an outcome
    summary = records.read_summary(str(tmp_path))
    assert summary['status'] == records.DIVERGED
    assert 1 <= summary['diverged_at_step'] <= 28 and summary['epochs_completed'] == 0
    if summary['last_finite_step']:
        assert summary['last_finite_step']['step'] == summary['diverged_at_step'] - 1
        assert np.isfinite(summary['last_finite_step']['train_loss'])
    assert not all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
    with pytest.raises(errors.WorkdirError, match='already holds a diverged run'):
        loop.train_and_evaluate(config, str(tmp_path))


def test_progress_reaches_tensorboard_at_a_steady_rate(make_config, tmp_path):
    import tensorflow as tf
    config = make_config(num_epochs=1, progress_every_steps=10, diagnostics__every_steps=0)
    loop.train_and_evaluate(config, str(tmp_path))
    events = [e for e in os.listdir(tmp_path) if e.startswith('events.out.tfevents')]
    scalars = {}
    for event in tf.compat.v1.train.summary_iterator(str(tmp_path / events[0])):
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append(
                (event.step, float(tf.make_ndarray(value.tensor))))
    assert [s for s, _ in scalars['progress/steps_per_s']] == [10, 20]
    for step, examples_per_s in scalars['progress/examples_per_s']:
        assert examples_per_s > 0
    eta = dict(scalars['progress/eta_s'])
    assert eta[10] > eta[20] > 0  # 18 steps left, then 8
    assert all(np.isfinite(v) for _, v in scalars['progress/train_loss'])


def test_cifar10_trains_under_mock_data(make_config, tmp_path):
    import tensorflow_datasets as tfds
    config = make_config(data__name='cifar10', data__data_dir=str(tmp_path / 'tfds'),
                         num_epochs=1, batch_size=64, eval__batch_size=64)
    with tfds.testing.mock_data(num_examples=256):
        loop.train_and_evaluate(config, str(tmp_path / 'run'))
    summary = records.read_summary(str(tmp_path / 'run'))
    # 256 mock examples less a tenth of each class for validation: 3 steps of 64.
    assert summary['status'] == records.COMPLETE and summary['steps'] == 3
    # 3 input channels reach conv1: 3*3*3*32 kernel weights.
    assert summary['num_params'] > 0 and 0.0 <= summary['final_test_accuracy'] <= 1.0


def test_step_queue_waits_for_the_oldest_beyond_its_limit(monkeypatch):
    waited = []
    monkeypatch.setattr(parallel.jax, 'block_until_ready', waited.append)
    queue = parallel.StepQueue(2)
    for step in range(4):
        queue.add(step)
    assert waited == [0, 1, 2]  # after dispatching step N, step N - 1 is waited for
    unbounded = parallel.StepQueue(0)
    for step in range(4):
        unbounded.add(step)
    assert waited == [0, 1, 2] and not unbounded.pending  # nothing waited for, nothing kept


def test_a_long_study_drops_its_programs_before_the_memory_maps_run_out(monkeypatch):
    from bn_study.studies import runner
    from bn_study.training import vmap_seeds
    cleared = []
    monkeypatch.setattr(jax, 'clear_caches', lambda: cleared.append(True))
    monkeypatch.setattr(parallel, 'MAPS_RELEASE_SHARE', 1.0)  # never reached
    assert not parallel.release_programs_if_maps_high() and not cleared
    monkeypatch.setattr(parallel, 'MAPS_RELEASE_SHARE', 0.0)  # always past it
    assert parallel.release_programs_if_maps_high() and cleared == [True]

    def crash(group):
        raise RuntimeError('the run failed')
    monkeypatch.setattr(vmap_seeds, 'train_group', crash)
    with pytest.raises(RuntimeError):  # released after a failed run too
        runner._train_group([])
    assert cleared == [True, True]
