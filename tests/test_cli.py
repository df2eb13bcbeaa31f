"""The scripts as a user runs them: one-line errors for bad input, and a small study."""

import os
import subprocess
import sys

import pytest

from bn_study import records
from tests.conftest import REPO


def _run(script, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, 'scripts', script), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.mark.parametrize('override, message', [
    ('--config.model.bn_position=after_relu',
     "config.model.bn_position='after_relu' is not valid for model simple_cnn; choose one of: "
     'none, before_act, after_act, after_pool'),
    ('--config.model.name=resnet', "config.model.bn_position='before_act' is not valid for model "
                                   'resnet; choose one of: original, bn_after_addition'),
    ('--config.norm.kind=batchnorm', 'choose one of: batch, layer, group, instance, none'),
    ('--config.norm.kind=group --config.norm.num_groups=3',
     'config.norm.num_groups=3 does not divide the 32 channels of norm_conv1; choose one of: '
     '1, 2, 4, 8, 16, 32'),
    ('--config.norm.batch_stats=ghost --config.norm.ghost_batch_size=24',
     'ghost_batch_size=24 does not divide the per-device batch of 32'),
    ('--config.data.name=cifar10',
     "dataset 'cifar10' is not prepared in {tmp} and config.data.download is False; prepare "
     'it on a machine with network (tfds build cifar10 --data_dir=DIR)'),
    ('--config.data.name=cifar11', "config.data.name='cifar11' is neither one of: mnist_5k, "
                                   'mnist, fashion_mnist, cifar10, cifar100, svhn_cropped'),
    ('--num_processes=2', 'multi-host flags coordinator_address, num_processes and process_id '
                          'go together; missing: coordinator_address, process_id'),
    ('--config.optimizer.name=lamb', 'choose one of: sgd, adam, adamw'),
    ('--config.batch_size=130', 'config.batch_size=130 does not split evenly over 4 devices'),
    ('--config.model.bn_positon=after_act',
     "config.model has no key 'bn_positon'; valid keys: bn_on_output, bn_position, dtype, "
     'mlp, name, resnet, simple_cnn, vgg (from --config.model.bn_positon=after_act)'),
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


STUDY = '''
from configs import default
def get_config(arg=None):
    config = default.get_config()
    config.num_epochs = 1
    return config
def get_sweep(arg=None):
    return [{'model.bn_position': p, 'seed': 0} for p in ('none', 'after_pool')]
'''


def test_study_runs_each_placement_prints_a_table_and_skips_on_rerun(tmp_path, data_dir):
    config_file = tmp_path / 'study.py'
    config_file.write_text(STUDY)
    args = [f'--config={config_file}', f'--sweep_dir={tmp_path / "sweep"}',
            f'--config.data.data_dir={data_dir}']
    first = _run('sweep.py', *args)
    assert first.returncode == 0, first.stderr[-3000:]
    table = first.stdout.split('per placement')[1]
    assert 'none' in table and 'after_pool' in table
    assert 'runs: 2 ran, 0 skipped, 0 diverged, 0 failed' in first.stdout
    for name in ('model.bn_position-none__seed-0', 'model.bn_position-after_pool__seed-0'):
        summary = records.read_summary(str(tmp_path / 'sweep' / name))
        assert summary['status'] == records.COMPLETE and summary['final_test_accuracy'] > 0.8

    again = _run('sweep.py', *args)
    assert 'runs: 0 ran, 2 skipped, 0 diverged, 0 failed' in again.stdout, again.stderr[-3000:]

    changed = _run('sweep.py', *args, '--config.num_epochs=2')  # old results must not pass
    assert changed.returncode != 0
    assert 'made with a different config (differs in: num_epochs)' in changed.stderr


def test_unknown_sweep_key_fails_before_any_run(tmp_path, data_dir):
    config_file = tmp_path / 'study.py'
    config_file.write_text(STUDY.replace("'model.bn_position'", "'model.bn_place'"))
    result = _run('sweep.py', f'--config={config_file}', f'--sweep_dir={tmp_path / "sweep"}')
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "sweep key 'model.bn_place': config.model has no key 'bn_place'" in last
    assert not (tmp_path / 'sweep').exists()
