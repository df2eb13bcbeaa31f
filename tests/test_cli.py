"""The scripts as a user runs them: one-line errors for bad input, and a small study."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bn_study import cli, records
from bn_study.studies import sweep_index
from tests.conftest import REPO


def test_config_overrides_pass_to_workers():
    argv = ['sweep.py', '--config=x.py', '--config.seed', '3', '--config.num_epochs=2',
            '--workers=2']
    assert cli.config_overrides(argv) == ('--config.seed=3', '--config.num_epochs=2')


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, 'scripts', script), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


# The CLI's own paths: flags, a runtime data error, and one validation error of each kind.
# Every other validation message is tested in-process (test_train.py, much cheaper).
@pytest.mark.parametrize('override, message', [
    ('--config.model.bn_position=after_relu',
     "config.model.bn_position='after_relu' is not valid for model simple_cnn; choose a "
     'position for every layer (none, before_act, after_act, after_pool, after_pool_before_act), '
     'a preset (so_answer, bn_paper, airbench, none), or one position per layer, e.g. '
     'conv1=before_act,conv2=before_act,fc1=before_act,fc2=none'),
    ('--config.norm.kind=batchnorm', 'choose one of: batch, layer, group, instance, none'),
    ('--config.data.name=cifar10',
     "dataset 'cifar10' is not prepared in {tmp} and config.data.download is False; prepare "
     'it on a machine with network (tfds build cifar10 --data_dir=DIR)'),
    ('--num_processes=2', 'multi-host flags coordinator_address, num_processes and process_id '
                          'go together; missing: coordinator_address, process_id'),
    ('--config.model.bn_positon=after_act',
     "config.model has no key 'bn_positon'; nearest: model.bn_position"),
    ('--config.data.name=mnist', "dataset 'mnist' is not prepared"),
])
def test_bad_input_gets_one_error_line_and_no_record(tmp_path, data_dir, override, message):
    workdir = tmp_path / 'run'
    result = _run('train.py', '--config=configs/default.py', f'--workdir={workdir}',
                  f'--config.data.data_dir={tmp_path}', '--config.data.download=False',
                  '--config.cpu_devices=4', *override.split())
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and message.format(tmp=tmp_path) in last, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    assert not workdir.exists()


STUDY = """
from configs import default
def get_config(arg=None):
    config = default.get_config()
    config.num_epochs = 1
    config.checkpoint.every_steps = 10
    config.model.simple_cnn.conv_features = (8, 16)  # small: the test is about the sweep
    config.model.simple_cnn.hidden_features = 32
    return config
def get_sweep(arg=None):
    # after_pool trains 3 times as long, so it is mid-run when none completes (alike, the
    # two once finished within one poll of each other).
    return [{'model.bn_position': 'none'}, {'model.bn_position': 'after_pool', 'num_epochs': 3},
            # fails at run time: not prepared, and no download allowed
            {'model.bn_position': 'after_act', 'data.name': 'mnist', 'data.download': False}]
"""
FAILING = 'model.bn_position-after_act__data.name-mnist__data.download-False'
LONGER = 'model.bn_position-after_pool__num_epochs-3'


def _statuses(sweep_dir):
    return {name: (records.read_summary(str(sweep_dir / name)) or {}).get('status')
            for name in ('model.bn_position-none', LONGER, FAILING)}


def test_a_killed_parallel_sweep_reruns_only_its_missing_runs(tmp_path, data_dir):
    """Two workers; killed once a run completes; the rerun (in this process) skips what
    finished, resumes or starts the rest, and a failing run stops nothing."""
    config_file = tmp_path / 'study.py'
    config_file.write_text(STUDY)
    sweep_dir = tmp_path / 'sweep'
    args = [f'--config={config_file}', f'--sweep_dir={sweep_dir}',
            f'--config.data.data_dir={data_dir}']
    sweep = subprocess.Popen([sys.executable, os.path.join(REPO, 'scripts', 'sweep.py'), *args,
                              '--workers=2', '--cores_per_worker=1'], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.time() + 300
    while records.COMPLETE not in _statuses(sweep_dir).values() and time.time() < deadline:
        assert sweep.poll() is None, 'the sweep ended before any run completed'
        time.sleep(0.5)
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and its workers, mid-run
    sweep.wait()
    before = _statuses(sweep_dir)
    complete = [name for name, status in before.items() if status == records.COMPLETE]
    assert complete == ['model.bn_position-none'], before
    index = sweep_index.read_index(sweep_dir)
    assert len(index) == 3 and {r['status'] for r in index} <= {
        'pending', 'interrupted', 'complete', 'failed'}

    rerun = _run('sweep.py', *args, '--workers=0')
    assert rerun.returncode == 1  # the failing run
    assert 'runs: 1 ran, 1 skipped, 0 diverged, 1 failed' in rerun.stdout, rerun.stderr[-3000:]
    table = rerun.stdout.split('per placement')[1]
    assert 'none' in table and 'after_pool' in table
    rows = {r['run']: r for r in sweep_index.read_index(sweep_dir)}
    assert [rows[n]['status'] for n in _statuses(sweep_dir)] == ['complete', 'complete', 'failed']
    assert "dataset 'mnist' is not prepared" in rows[FAILING]['error']
    for name in complete:  # untouched by the rerun
        assert records.read_summary(str(sweep_dir / name))['resumed_at_steps'] == []


def test_unknown_sweep_key_fails_before_any_run(tmp_path, data_dir):
    config_file = tmp_path / 'study.py'
    config_file.write_text(STUDY.replace("'model.bn_position'", "'model.bn_place'"))
    result = _run('sweep.py', f'--config={config_file}', f'--sweep_dir={tmp_path / "sweep"}')
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert ("error: sweep key 'model.bn_place': config.model has no key 'bn_place'; nearest: "
            'model.bn_position') in last
    assert not (tmp_path / 'sweep').exists()


def test_a_per_layer_placement_trains_from_the_command_line(tmp_path, data_dir):
    workdir = tmp_path / 'run'
    spec = 'conv1=after_pool_before_act,conv2=none,fc1=after_act,fc2=after_layer'
    result = _run('train.py', '--config=configs/default.py', f'--workdir={workdir}',
                  f'--config.data.data_dir={data_dir}', '--config.num_epochs=1',
                  '--config.model.simple_cnn.conv_features=(8, 16)',
                  '--config.model.simple_cnn.hidden_features=32',
                  f'--config.model.bn_position={spec}')
    assert result.returncode == 0, result.stderr[-3000:]
    summary = records.read_summary(str(workdir))
    assert summary['status'] == records.COMPLETE
    assert summary['placement'] == {'conv1': 'after_pool_before_act', 'conv2': 'none',
                                    'fc1': 'after_act', 'fc2': 'after_layer'}
    assert summary['final_val_accuracy'] > 0.5  # it learned
