"""The benchmark: its plan of measurements, medians and target ratios, the project's timings
from the real steps, the PyTorch peer's coverage, and the script end to end."""

import json
import os
import subprocess
import sys

import pytest

from bn_study import errors
from bn_study.perf import benchmark, timing, torch_peer
from configs import default
from tests.conftest import REPO


def _plan(**kw):
    args = dict(config=default.get_config(), config_spec='configs/default.py',
                overrides=('--config.batch_size=64',), devices=[1, 2],
                no_norm_baseline=True, torch_peer=True, vmap_seeds=0, common=('--steps=5',))
    return benchmark.plan(**{**args, **kw})


def test_the_plan_measures_each_device_count_the_baseline_and_the_peer():
    plan = _plan()
    assert [m.label for m in plan] == [
        'bn_study before_act, 1 device', 'bn_study before_act, 2 devices',
        'torch eager before_act', 'bn_study none, 1 device', 'bn_study none, 2 devices',
        'torch eager none']
    two = plan[1]
    # The user's overrides come first, the measurement's own last: they win.
    assert two.flags == ('--config=configs/default.py', '--config.batch_size=64', '--steps=5',
                         '--config.model.bn_position=before_act', '--config.cpu_devices=2',
                         '--config.num_devices=2', '--kind=project')
    assert [m.kind for m in _plan(torch_peer=False, no_norm_baseline=False,
                                  vmap_seeds=3)] == ['project', 'project', 'vmap']


def test_medians_and_the_target_ratios():
    plan = _plan(devices=[2])
    rounds = {
        'bn_study before_act, 2 devices': [
            {'train_examples_per_s': 3000.0, 'train_step_ms': 40.0,
             'pipeline_examples_per_s': 30000.0},
            {'train_examples_per_s': 1000.0, 'train_step_ms': 60.0,
             'pipeline_examples_per_s': 50000.0},
            {'error': 'exit 1: boom'}],
        'torch eager before_act': [{'train_examples_per_s': 1000.0, 'train_step_ms': 64.0}],
        'bn_study none, 2 devices': [{'train_examples_per_s': 4000.0, 'train_step_ms': 40.0,
                                      'pipeline_examples_per_s': 40000.0}],
        'torch eager none': [{'error': 'exit 1: no torch'}]}
    summary = {label: benchmark.medians(r) for label, r in rounds.items()}
    assert summary['bn_study before_act, 2 devices']['train_step_ms'] == 50.0
    assert summary['bn_study before_act, 2 devices']['rounds'] == 2
    assert summary['torch eager none'] == {'error': 'exit 1: no torch'}
    ratios = benchmark.ratios(plan, summary)
    assert ratios['bn_study before_act, 2 devices / torch eager, examples/s'] == 2.0
    assert ratios['bn_study before_act, 2 devices: step time with norm / without'] == 1.25
    assert ratios['bn_study before_act, 2 devices: input pipeline / training step, '
                  'examples/s'] == 20.0
    assert not any(name.startswith('bn_study none, 2 devices /') for name in ratios)
    table = benchmark.table(plan, summary)
    assert any('failed: exit 1: no torch' in line for line in table)


def test_bad_device_lists_are_refused():
    assert benchmark.parse_devices(['1', '4']) == [1, 4]
    for bad in (['0'], ['two'], []):
        with pytest.raises(errors.ConfigError, match='must list device counts of at least 1'):
            benchmark.parse_devices(bad)


def test_the_peer_covers_the_seed_cnn_with_batch_norm_or_none():
    config = default.get_config()
    assert torch_peer.unsupported(config) is None
    config.model.name = 'resnet'
    assert 'only simple_cnn' in torch_peer.unsupported(config)
    config = default.get_config()
    config.norm.kind = 'group'
    assert 'only batch, none' in torch_peer.unsupported(config)


def test_the_project_figures_come_from_its_real_steps(make_config, tmp_path):
    config = make_config(model__simple_cnn__conv_features=(8, 16),
                         model__simple_cnn__hidden_features=32)
    figures = timing.measure(config, str(tmp_path), steps=3, warmup=1)
    assert figures['devices'] == 4 and figures['batch_size'] == 128
    assert figures['platform'] == 'cpu' and figures['steps'] == 3
    for key in ('train_compile_s', 'eval_examples_per_s', 'pipeline_examples_per_s',
                'peak_rss_mb'):
        assert figures[key] > 0


def test_the_benchmark_runs_each_measurement_in_its_child_and_prints_the_ratios(tmp_path,
                                                                               capsys):
    """benchmark.run with the child processes replaced: each measurement's child command
    (python -m bn_study.perf.child), rounds alternating, the table, ratios and JSON."""
    config = default.get_config()
    asked = []

    def fake_child(measurement):
        asked.append(measurement.flags)
        return {'train_examples_per_s': 2000.0 if measurement.bn_position == 'none' else 1000.0,
                'train_step_ms': 10.0, 'pipeline_examples_per_s': 8000.0, 'devices': 1}
    out = tmp_path / 'figures.json'
    written = benchmark.run(config, 'configs/default.py', ('--config.seed=3',), ['1'], 2, 0, 2,
                            torch_peer=False, json_path=str(out), run_child=fake_child)
    assert [flags[-1] for flags in asked] == ['--kind=project'] * 4
    assert asked[0][:2] == ('--config=configs/default.py', '--config.seed=3')
    printed = capsys.readouterr().out
    assert 'medians of 2 rounds of 2 steps' in printed
    assert 'bn_study before_act, 1 device: input pipeline / training step, examples/s: 8.00x' in (
        printed)
    assert json.loads(out.read_text()) == json.loads(json.dumps(written))
    assert written['medians']['bn_study none, 1 device']['rounds'] == 2
    with pytest.raises(errors.ConfigError, match='must list device counts'):
        benchmark.run(config, 'configs/default.py', (), ['0'], 2, 0, 1, run_child=fake_child)
    config.data.name = 'my_tfds_set'
    with pytest.raises(errors.ConfigError, match='the benchmark needs a catalogue dataset: '
                                                 'mnist_5k, mnist, '):
        benchmark.run(config, 'configs/default.py', (), ['1'], 2, 0, 1, run_child=fake_child)


def test_a_child_command_is_the_child_module(monkeypatch):
    plan = _plan(devices=[1], no_norm_baseline=False, torch_peer=False)
    called = []

    def fake_run(command, **kw):
        called.append(command)
        return subprocess.CompletedProcess(command, 1, 'FIGURES {"x": 1}\n', '')
    monkeypatch.setattr(benchmark.subprocess, 'run', fake_run)
    assert benchmark.run_child(plan[0]) == {'x': 1}
    assert called == [[sys.executable, '-m', 'bn_study.perf.child', *plan[0].flags]]


def test_the_script_prints_figures_and_writes_json(tmp_path):
    out = tmp_path / 'figures.json'
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'scripts', 'benchmark.py'),
         '--config=configs/default.py', '--devices=2', '--rounds=1', '--steps=2',
         '--warmup=0', '--torch=false', f'--json={out}',
         '--config.model.simple_cnn.conv_features=(8,16)'],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'bn_study before_act, 2 devices' in result.stdout
    assert 'step time with norm / without' in result.stdout
    written = json.loads(out.read_text())
    assert written['medians']['bn_study none, 2 devices']['devices'] == 2
    assert written['config']['model']['simple_cnn']['conv_features'] == [8, 16]
