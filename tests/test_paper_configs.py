"""Every paper config loads in both variants, expands its sweep into valid runs, names only
real config keys in its claims, and its scaled-down variant trains a step: no config rots.

A variant is a fixed sweep (get_sweep) or a tuned comparison (get_tuning, studies/tuning.py);
of a tuned one, the runs checked are those its sweep starts with in an empty sweep dir:
stage 1, every option at every grid point on the tuning seeds."""

import contextlib
import glob
import importlib
import os

import jax
import numpy as np
import pandas as pd
import pytest
import tensorflow_datasets as tfds
from flax import jax_utils

from bn_study import errors, records, schema
from bn_study.analysis import claims, report_spec, results, tuned_report
from bn_study.studies import declare, runner, tuning
from bn_study.training import data, loop
from tests.conftest import REPO

STUDIES = sorted(os.path.basename(p)[:-3]
                 for p in glob.glob(os.path.join(REPO, 'configs', 'paper', '*.py'))
                 if not os.path.basename(p).startswith(('_', 'common')))


# The paper studies whose cpu variant is a tuned comparison (issue 16: their verdicts
# depended on a shared learning rate or on too few seeds).
TUNED_CPU = ('caffenet_bn', 'seed_question_lr', 'wuhe2018_groupnorm')


def _module(name):
    return importlib.import_module(f'configs.paper.{name}')


def _tuning(module, arg):
    """The variant's tuned comparison, or None for a fixed sweep (as runner.study_tuning)."""
    return module.get_tuning(arg) if hasattr(module, 'get_tuning') else None


def _first_sweep(module, arg, sweep_dir):
    """The override dicts scripts/sweep.py starts with in an empty sweep dir: a fixed sweep
    whole, a tuned comparison's stage 1."""
    plan = _tuning(module, arg)
    if plan is None:
        return module.get_sweep(arg)
    return tuning.current_sweep(plan, sweep_dir, module.get_report(arg).margin)


def test_the_six_studies_are_there():
    assert STUDIES == ['caffenet_bn', 'he2016_units', 'ioffe2015_mnist', 'seed_question_lr',
                       'wuhe2018_groupnorm', 'wujohnson2021_precisebn']


@pytest.mark.parametrize('name', STUDIES)
def test_the_cpu_variants_of_issue_16_are_tuned_and_the_full_variants_fixed(name):
    module = _module(name)
    assert _tuning(module, None) is None
    plan = _tuning(module, 'cpu')
    assert (plan is not None) == (name in TUNED_CPU)
    if plan is not None:
        tuning.check(plan)
        # A fixed grid for the tuned variant would be one nothing runs: refused, saying why.
        with pytest.raises(errors.ConfigError, match=rf'{name}\.py:cpu is a tuned comparison'):
            module.get_sweep('cpu')


@pytest.mark.parametrize('name', STUDIES)
@pytest.mark.parametrize('arg', [None, 'cpu'])
def test_a_study_expands_into_valid_runs_and_checkable_claims(name, arg, tmp_path):
    module = _module(name)
    base = module.get_config(arg)
    schema.validate(base)
    plan = _tuning(module, arg)
    # declare.expand refuses unknown keys and bad values, so every option's keys are real.
    runs = declare.expand(base, _first_sweep(module, arg, str(tmp_path)), str(tmp_path))
    assert len({r.name for r in runs}) == len(runs)
    if plan is None:
        assert len(runs) >= 12
        assert len({r.overrides.get('seed', base.seed) for r in runs}) >= 3  # intervals
    else:
        tuning.check(plan)
        points = tuning.grid_points(plan)
        assert len(runs) == len(plan.options) * len(points) * len(plan.tuning_seeds)
        assert len(plan.comparison_seeds) >= 3  # intervals need seeds
        # Each option picks out its own runs (the report tells runs' options apart so).
        for overrides in plan.options.values():
            own = [r for r in runs if all(_get(r.config, k) == v for k, v in overrides.items())]
            assert len(own) == len(points) * len(plan.tuning_seeds), overrides
        # Stage 2 at any choice expands too, on workdirs of its own.
        chosen = {option: points[-1] for option in plan.options}
        declare.expand(base, tuning.tuning_sweep(plan) + tuning.comparison_sweep(
            plan, chosen, len(plan.comparison_seeds)), str(tmp_path))
    spec = module.get_report(arg)
    assert report_spec.ReportSpec.from_json(spec.to_json()) == spec
    assert schema.unknown_key(base, spec.compare) is None
    for claim in spec.claims:
        for side in (claim.better, claim.worse, claim.where):
            for key, value in side.items():
                if key == report_spec.EVAL:
                    assert value in base.eval.stats
                    continue
                assert schema.unknown_key(base, key) is None, (claim, key)
                # Each named value is one that some run has: the claim can be checked.
                assert any(r.overrides.get(key, _get(base, key)) == value for r in runs), (
                    claim, key, value)
    docstring = module.__doc__
    assert f'configs/paper/{name}.py:cpu' in docstring and 'GPU' in docstring


@pytest.mark.parametrize('name', STUDIES)
def test_the_runner_loads_each_study_by_its_path_and_variant(name, tmp_path):
    """What scripts/sweep.py does with --config=configs/paper/NAME.py:cpu: the file loaded by
    path, its get_sweep and get_report called with the variant."""
    module = _module(name)
    spec = os.path.join(REPO, 'configs', 'paper', f'{name}.py:cpu')
    base = module.get_config('cpu')
    runs = runner.expand(runner.Study(spec, base, str(tmp_path)))
    assert runs == declare.expand(base, _first_sweep(module, 'cpu', str(tmp_path)),
                                  str(tmp_path))
    assert runner.study_tuning(spec) == _tuning(module, 'cpu')
    assert runner.report_spec(spec) == module.get_report('cpu').to_json()


def _get(config, key):
    for part in key.split('.'):
        config = config[part]
    return config


def test_a_config_argument_that_is_no_variant_is_refused():
    with pytest.raises(errors.ConfigError, match=r'he2016_units.py:gpu is no variant; '
                                                  r'choose one of: \(none, the full protocol\)'):
        _module('he2016_units').get_config('gpu')


def _first_run(name, arg, data_dir, tmp_path):
    module = _module(name)
    sweep_dir = str(tmp_path / 'sweep')
    config = declare.expand(module.get_config(arg), _first_sweep(module, arg, sweep_dir),
                          sweep_dir)[0].config
    # This process's JAX has conftest's 4 devices; the studies run on 2 (cpu_devices=2).
    config.cpu_devices, config.num_devices = 0, 2
    config.data.data_dir = data_dir if config.data.name == data.EMBEDDED_NAME else str(
        tmp_path / 'tfds')
    return config


@pytest.mark.parametrize('name', STUDIES)
def test_the_scaled_down_variant_trains_a_step(name, data_dir, tmp_path):
    config = _first_run(name, 'cpu', data_dir, tmp_path)
    # Only TFDS's MNIST needs mock data (no download); the embedded digits are real, and
    # mock_data would also blank the info of the copy earlier tests registered in data_dir.
    embedded = config.data.name == data.EMBEDDED_NAME
    with (contextlib.nullcontext() if embedded
          else tfds.testing.mock_data(num_examples=2 * config.batch_size)):
        setup = loop.prepare(config, str(tmp_path / 'run'))
    batch = next(setup.feed(config).batches(0, 1))
    state = jax_utils.replicate(loop.initial_state(config, setup), setup.local_devices)
    _, metrics = loop.pmapped_train_step(setup.devices)(state, batch)
    assert np.isfinite(np.asarray(metrics['loss'])).all()
    assert bool(np.asarray(metrics['finite']).all())


@pytest.mark.parametrize('name', STUDIES)
def test_the_full_variant_builds_its_models_on_its_data(name, tmp_path):
    """The published protocol's datasets (under TFDS's mock data) and every model of the
    sweep pass every check a run makes before it trains; compiling them is left to the
    accelerators they are meant for."""
    module = _module(name)
    sweep_dir = str(tmp_path / 's')
    runs = declare.expand(module.get_config(None), _first_sweep(module, None, sweep_dir),
                          sweep_dir)
    distinct = {r.config.model.to_json() + r.config.norm.to_json(): r for r in runs}
    for run in distinct.values():
        config = run.config
        config.cpu_devices = 0
        config.num_devices = 1  # one device: every batch size of the sweep splits over it
        config.data.data_dir = str(tmp_path / 'tfds')
        with tfds.testing.mock_data(num_examples=2 * config.batch_size):
            loop.prepare(config, str(tmp_path / 'run'))
    assert jax.device_count() == 4  # untouched


def _paired_seeds(module, arg, sweep, sweep_dir) -> list[int]:
    """Per claim, the most seeds it pairs in one group, on a synthetic table of `sweep`
    (every run complete); a tuned study's claims on the runs its report checks them on."""
    base = module.get_config(arg)
    runs = declare.expand(base, sweep, sweep_dir)
    table = pd.DataFrame([{
        **{key: _get(run.config, key) for r in runs for key in r.overrides},
        'seed': run.config.seed, 'summary.status': records.COMPLETE,
        **{f'summary.final_test_accuracy{suffix}': 0.9
           for suffix in ('', *(f'_{kind}' for kind in base.eval.stats))}}
        for run in runs])
    plan = _tuning(module, arg)
    paired = []
    for claim in module.get_report(arg).claims:
        chosen, held = ((table, results.configuration_keys(table)) if plan is None
                        else tuned_report.claim_runs(claim, table, plan))
        paired.append(max(o.difference.n for o in claims.check(claim, chosen, held)))
    return paired


def _both_stages(plan, choose) -> list[dict]:
    """A tuned comparison's runs once every look is taken, each option at the grid point
    `choose(index of the option, grid points)` picks."""
    points = tuning.grid_points(plan)
    chosen = {option: choose(i, points) for i, option in enumerate(plan.options)}
    return tuning.tuning_sweep(plan) + tuning.comparison_sweep(
        plan, chosen, len(plan.comparison_seeds))


@pytest.mark.parametrize('name', STUDIES)
@pytest.mark.parametrize('arg', [None, 'cpu'])
def test_every_claim_meets_both_its_sides_in_some_group(name, arg, tmp_path):
    """On a synthetic table of the sweep (every run complete), each claim pairs seeds in at
    least one group: no claim is 'not measured' everywhere, e.g. because a key set by the
    named ones (a learning rate scaled with the batch) was held fixed. A tuned study's
    table: both stages, every option having chosen the same rate (for options at different
    rates, see the next test)."""
    module = _module(name)
    plan = _tuning(module, arg)
    sweep = (module.get_sweep(arg) if plan is None
             else _both_stages(plan, lambda i, points: points[0]))
    paired = _paired_seeds(module, arg, sweep, str(tmp_path))
    assert all(n >= 2 for n in paired), list(zip(module.get_report(arg).claims, paired))


@pytest.mark.parametrize('name', TUNED_CPU)
def test_claims_pair_seeds_when_the_options_chose_different_rates(name, tmp_path):
    """Each option of a tuned cpu variant at a different rate (cycling through the grid):
    every claim still pairs two or more seeds in some group."""
    module = _module(name)
    sweep = _both_stages(_tuning(module, 'cpu'), lambda i, points: points[i % len(points)])
    paired = _paired_seeds(module, 'cpu', sweep, str(tmp_path))
    assert all(n >= 2 for n in paired), list(zip(module.get_report('cpu').claims, paired))
