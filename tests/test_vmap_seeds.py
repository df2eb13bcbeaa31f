"""Seeds vmapped in one program equal the same runs trained alone."""

import jax
import numpy as np
import pytest
from flax import jax_utils

from bn_study import errors, records
from bn_study.studies import declare
from bn_study.training import loop, vmap_seeds


def _small(make_config, seed, eval_stats=('ema',)):
    return make_config(seed=seed, num_epochs=1, num_devices=1,
                       model__simple_cnn__conv_features=(8, 16),
                       model__simple_cnn__hidden_features=32,
                       eval__stats=eval_stats, diagnostics__every_steps=10)


def test_the_vmapped_step_equals_each_members_own_step(make_config, tmp_path):
    configs = [_small(make_config, seed) for seed in (0, 1)]
    setup = loop.prepare(configs[0], tmp_path)
    batches = [list(setup.feed(c).batches(0, 3)) for c in configs]
    states = [loop.initial_state(c, setup) for c in configs]
    pmap = lambda fn: jax.pmap(fn, axis_name=loop.BATCH_AXIS, devices=setup.devices)
    solo_step, vmapped_step = pmap(loop.train_step), pmap(jax.vmap(loop.train_step))
    alone = [jax_utils.replicate(s, setup.local_devices) for s in states]
    together = jax_utils.replicate(vmap_seeds.stack(states), setup.local_devices)
    for step in range(3):
        alone = [solo_step(s, b[step])[0] for s, b in zip(alone, batches)]
        together, _ = vmapped_step(together, vmap_seeds.stack_batches([b[step] for b in batches]))
    for k, solo in enumerate(alone):  # three steps: only rounding apart
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     loop.first_replica(solo.params),
                     jax.tree.map(lambda x: x[k], loop.first_replica(together.params)))


def test_a_vmapped_seed_writes_the_record_of_its_run_alone(tmp_path, make_config):
    # ema and batch: the test batches' draw depends on each member's seed
    configs = [_small(make_config, seed, ('ema', 'batch')) for seed in (0, 1)]
    solo = loop.train_and_evaluate(configs[1], tmp_path / 'alone')
    together = vmap_seeds.train_seeds(configs, [tmp_path / f'vmapped{c.seed}' for c in configs])
    # Rounding differences grow over 28 steps through ReLU kinks and max-pool ties (see
    # WORKSPACE, Determinism): up to ~1e-3 in single weights, so the tolerance is loose;
    # a wrong member, seed or data order differs by ~0.1.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=5e-3),
                 solo.params, together[1].params)
    a, b = records.read_summary(tmp_path / 'alone'), records.read_summary(tmp_path / 'vmapped1')
    assert b['status'] == records.COMPLETE and b['vmapped_seeds'] == [0, 1]
    for key in ('final_test_accuracy_ema', 'final_test_accuracy_batch'):
        assert abs(a[key] - b[key]) <= 0.01, key  # 10 of the 1,000 test images
    assert b['final_train_loss'] == pytest.approx(a['final_train_loss'], rel=1e-2)
    rows = lambda name: records.read_metrics(tmp_path / name, records.DIAGNOSTICS_FILE)
    assert [(r['step'], r['layer']) for r in rows('alone')] == [
        (r['step'], r['layer']) for r in rows('vmapped1')]
    assert records.read_summary(tmp_path / 'vmapped0')['status'] == records.COMPLETE
    assert np.abs(together[0].params['conv1']['kernel'] -
                  together[1].params['conv1']['kernel']).max() > 0.1  # the seeds stayed apart


def test_only_runs_that_differ_in_seed_alone_are_grouped(make_config):
    configs = [make_config(seed=0), make_config(seed=1, batch_size=64)]
    with pytest.raises(errors.ConfigError, match='differ only in seed; these also differ in: '
                                                  'batch_size'):
        vmap_seeds.check_seed_group(configs)
    with pytest.raises(errors.ConfigError, match='must be distinct'):
        vmap_seeds.check_seed_group([make_config(seed=2), make_config(seed=2)])
    grid = declare.product({'model.bn_position': ('none', 'after_act'), 'seed': range(3)})
    runs = declare.expand(make_config(), grid, '/tmp/unused')
    groups = declare.seed_groups(runs, size=2)
    assert [[r.overrides['seed'] for r in g] for g in groups] == [[0, 1], [2], [0, 1], [2]]
    assert {r.config.model.bn_position for r in groups[2]} == {'after_act'}
    assert declare.seed_groups(runs, size=0) == [[r] for r in runs]
