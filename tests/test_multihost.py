"""Multi-host: 2 local processes x 2 simulated devices train as 1 process x 4 devices."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from bn_study import records
from bn_study.training import checkpoint, loop
from tests.conftest import REPO

# 7 steps of 512: the float32 rounding of the cross-process all-reduce (gloo sums in another
# order) grows through ReLU and max-pool decisions with every step. After 7 steps the
# parameters agree within ~1e-7; after 62 steps of 64 they differed by up to 1e-2 on one
# machine and 1e-5 on another (the CPU's kernels decide how fast it grows).
OVERRIDES = {'num_epochs': 1, 'batch_size': 512, 'data.train_shards': 2,
             'checkpoint.every_steps': 0, 'model.bn_position': 'before_act'}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_of_two_devices_match_one_process_of_four(make_config, tmp_path,
                                                                data_dir):
    workdir = tmp_path / 'two_hosts'
    address = f'127.0.0.1:{_free_port()}'
    env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
    flags = [f'--config.{key}={value}' for key, value in OVERRIDES.items()]
    processes = [subprocess.Popen(
        [sys.executable, 'scripts/train.py', '--config=configs/default.py',
         f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', *flags,
         f'--coordinator_address={address}', '--num_processes=2', f'--process_id={i}'],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]

    reference = tmp_path / 'one_host'
    loop.train_and_evaluate(make_config(**{k.replace('.', '__'): v
                                            for k, v in OVERRIDES.items()}), str(reference))
    two, one = records.read_summary(workdir), records.read_summary(reference)
    assert two['status'] == records.COMPLETE and two['environment']['process_count'] == 2
    assert two['normalization']['num_devices'] == one['normalization']['num_devices'] == 4
    # Only process 0 wrote: one metrics row per epoch and one TensorBoard events file.
    assert len(records.read_metrics(workdir)) == 1
    assert len([f for f in os.listdir(workdir) if f.startswith('events.out')]) == 1
    # The same examples reach the same devices; only the cross-process all-reduce (gloo)
    # sums in another order, so parameters agree to float32 rounding, not bitwise.
    for a, b in zip(jax.tree.leaves(checkpoint.read_newest(workdir)['params']),
                    jax.tree.leaves(checkpoint.read_newest(reference)['params']),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    assert abs(two['final_train_loss'] - one['final_train_loss']) < 1e-5
