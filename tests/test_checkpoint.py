"""Checkpoints: resume after a real SIGKILL, fall back past a corrupt checkpoint, refuse a
workdir of another config."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bn_study import errors, records
from bn_study.training import checkpoint, loop
from tests.conftest import REPO

# 2 epochs of 28 steps; a checkpoint every 5 steps, so a kill lands between, during or just
# after saves, and the last one is the final step's.
RUN_FLAGS = ('--config.cpu_devices=4',  # as many as this process's JAX: bitwise comparable
             '--config.num_epochs=2', '--config.checkpoint.every_steps=5',
             '--config.checkpoint.keep=3', '--config.progress_every_steps=0',
             '--config.diagnostics.every_steps=10', '--config.model.bn_position=after_act',
             # a narrow CNN: the test is about kills and resumption, not the network's size
             "--config.model.simple_cnn.conv_features=(8,16)",
             '--config.model.simple_cnn.hidden_features=32')


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    import jax
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _start(workdir, data_dir):
    """The training script on a workdir relative to its working directory, as users type it."""
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO, 'scripts', 'train.py'),
         f'--config={os.path.join(REPO, "configs", "default.py")}', f'--workdir={workdir.name}',
         f'--config.data.data_dir={data_dir}', *RUN_FLAGS],
        cwd=workdir.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_at_random_moments_resumes_to_a_bitwise_equal_state(
        make_config, tmp_path, data_dir):
    workdir = tmp_path / 'killed'
    checkpoints = workdir / checkpoint.CHECKPOINT_DIR
    rng = random.Random(0)
    kills = 0
    while kills < 2:
        run = _start(workdir, data_dir)
        # Wait for training to be under way (a new checkpoint, or the first one), then kill
        # at a random moment: during a step, an evaluation, a save or the record's writes.
        before = set(os.listdir(checkpoints)) if checkpoints.exists() else set()
        while run.poll() is None and (not checkpoints.exists()
                                      or set(os.listdir(checkpoints)) <= before):
            time.sleep(0.05)
        if run.poll() is not None:
            break  # finished before the kill: the remaining attempts have nothing to cut
        time.sleep(rng.uniform(0.0, 0.25))  # training steps take milliseconds
        run.send_signal(signal.SIGKILL)
        run.wait()
        kills += 1
    assert kills == 2, "the run finished before it could be killed twice"
    final = _start(workdir, data_dir)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr[-2000:]
    summary = records.read_summary(workdir)
    assert summary['status'] == records.COMPLETE and summary['resumed_at_steps']
    assert [row['epoch'] for row in records.read_metrics(workdir)] == [1, 2]

    config = make_config(num_epochs=2, checkpoint__every_steps=5, checkpoint__keep=3,
                         progress_every_steps=0, diagnostics__every_steps=10,
                         model__bn_position='after_act',
                         model__simple_cnn__conv_features=(8, 16),
                         model__simple_cnn__hidden_features=32)
    reference = tmp_path / 'uninterrupted'
    loop.train_and_evaluate(config, str(reference))
    # Parameters, batch statistics, optimizer state: bitwise, across separate processes.
    _assert_bitwise_equal(checkpoint.read_newest(workdir), checkpoint.read_newest(reference))
    # The epoch metrics, even those of an epoch cut by a kill, match the uninterrupted run's.
    for killed, whole in zip(records.read_metrics(workdir), records.read_metrics(reference),
                             strict=True):
        assert killed['train_loss'] == whole['train_loss']
        assert killed['test_accuracy'] == whole['test_accuracy']
    # Diagnostics rows logged past a checkpoint were dropped and logged again, once.
    assert (records.read_metrics(workdir, records.DIAGNOSTICS_FILE)
            == records.read_metrics(reference, records.DIAGNOSTICS_FILE))


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(make_config, tmp_path, caplog):
    config = make_config(num_epochs=1, checkpoint__every_steps=10, checkpoint__keep=3)
    workdir = tmp_path / 'run'
    caplog.set_level('INFO')
    whole = loop.train_and_evaluate(config, str(workdir))
    # A run killed after its last save, before its summary: it finishes without a step.
    (workdir / records.SUMMARY_FILE).unlink()
    again = loop.train_and_evaluate(config, str(workdir))
    _assert_bitwise_equal(again.params, whole.params)
    assert records.read_summary(workdir)['resumed_at_steps'] == [28]
    # The same, with that last save damaged.
    (workdir / records.SUMMARY_FILE).unlink()
    last = workdir / checkpoint.CHECKPOINT_DIR / '28'
    for path in (last / 'state').rglob('*'):
        if path.is_file():
            path.write_bytes(b'\0' * 7)
    resumed = loop.train_and_evaluate(config, str(workdir))
    assert 'checkpoint at step 28 is unreadable' in caplog.text
    assert 'resuming from the checkpoint at step 20' in caplog.text
    _assert_bitwise_equal(resumed.params, whole.params)
    assert records.read_summary(workdir)['resumed_at_steps'] == [20]
    # The damaged save is set aside, and step 28 saved anew.
    assert (workdir / checkpoint.CHECKPOINT_DIR / '28.unreadable').exists()
    _assert_bitwise_equal(checkpoint.read_newest(workdir)['params'], whole.params)


def test_a_workdir_holding_another_config_is_refused_by_key(make_config, tmp_path):
    workdir = tmp_path / 'run'
    workdir.mkdir()
    other = make_config(seed=7, optimizer__learning_rate=0.5)
    (workdir / records.CONFIG_FILE).write_text(other.to_json())
    with pytest.raises(errors.WorkdirError,
                       match=r'different config \(keys: optimizer.learning_rate, seed\)'):
        loop.train_and_evaluate(make_config(), str(workdir))
    assert json.loads((workdir / records.CONFIG_FILE).read_text())['seed'] == 7
    assert sorted(os.listdir(workdir)) == [records.CONFIG_FILE]
