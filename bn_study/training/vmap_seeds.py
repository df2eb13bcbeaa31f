"""Several seeds of one configuration in one compiled program: jax.vmap over independent runs,
each with its own parameters, batch statistics, optimizer state and data order.

The step is the project's own train_step, vmapped inside the pmap: its collectives
(gradients, BN statistics) still pool over devices only, never across seeds, so each member
computes what it would alone, up to floating-point rounding of the batched kernels. Each
member writes its own record, evaluated, diagnosed and judged for divergence on its own; a
diverged member stops being recorded while the others go on.

Not built: mid-run checkpoints. A group saves none, so a killed group starts again from
step 0 (the sweep's next_action sees no checkpoint); its records say `vmapped_seeds`.
"""

import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import jax_utils

from bn_study.training import data
from bn_study.training import diagnostics
from bn_study.training import evaluation
from bn_study.training import parallel
from bn_study import records
from bn_study.training import run_record
from bn_study.training import loop
from bn_study import errors
from bn_study.training.parallel import first_replica


def check_seed_group(configs: list[ml_collections.ConfigDict]) -> None:
    """Members must differ in their seed and nothing else."""
    seeds = [config.seed for config in configs]
    if len(set(seeds)) != len(seeds):
        raise errors.ConfigError(f'vmapped seeds must be distinct; got {seeds}')
    first = json.loads(configs[0].to_json())
    for config in configs[1:]:
        differences = [k for k in records.config_differences(first, config) if k != 'seed']
        if differences:
            raise errors.ConfigError(f'vmapped runs may differ only in seed; these also differ '
                                      f'in: {", ".join(differences)}')


class _Member:
    """One run's host side: its record, epoch metrics, history and evaluator."""

    def __init__(self, config, workdir, evaluate_all):
        self.config, self.workdir, self.evaluate_all = config, workdir, evaluate_all
        self.record = run_record.RunRecord(workdir, writer=jax.process_index() == 0)
        self.history, self.epoch_metrics, self.live = [], loop.EpochMetrics(1), True


def stack(states: list) -> loop.TrainState:
    """The members' states as one, each leaf with a leading member axis. Their optimizers
    are equal but distinct objects, so the first member's stands for all."""
    leaves = [jnp.stack(xs) for xs in zip(*(jax.tree.leaves(s) for s in states))]
    return jax.tree.structure(states[0]).unflatten(leaves)


def _one(tree, k: int):
    """Member k's slice of a host-side stacked tree."""
    return jax.tree.map(lambda x: x[k], tree)


def pmapped_group_step(devices: list):
    """The training step of every member at once: vmapped over members inside the pmap."""
    return parallel.pmap(jax.vmap(loop.train_step), devices, donate_state=True)


def train_seeds(configs: list[ml_collections.ConfigDict], workdirs: list) -> list:
    """Trains the members together and writes each one's record as train_and_evaluate would;
    returns their final states."""
    check_seed_group(configs)
    setup = loop.prepare(configs[0], workdirs[0])
    for config, workdir in zip(configs[1:], workdirs[1:]):
        records.check_resumable(workdir, config)
    states = [loop.initial_state(config, setup) for config in configs]
    num_params = sum(x.size for x in jax.tree.leaves(states[0].params))
    uses_batch_stats = bool(jax.tree.leaves(states[0].batch_stats))
    config = configs[0]
    augment = data.augmentation(config.data, setup.info)
    batches_of = lambda seed: lambda first, last: data.train_batches(
        setup.shards, setup.info, augment, config.data.crop_padding, config.batch_size,
        setup.layout, seed, first, last)
    test_split = data.read_split(setup.builder, 'test')
    members = [_Member(c, w, evaluation.make_evaluator(
        c, setup.info, test_split, batches_of(c.seed), setup.devices, setup.layout,
        uses_batch_stats)) for c, w in zip(configs, workdirs)]
    for member in members:
        member.record.start(member.config, None)
    start = time.perf_counter()
    elapsed = lambda: time.perf_counter() - start
    try:
        p_train_step = pmapped_group_step(setup.devices)
        percentiles = tuple(config.diagnostics.percentiles)
        p_signal_step = parallel.pmap(diagnostics.make_signal_step(percentiles), setup.devices)
        replicate = lambda tree: jax_utils.replicate(tree, setup.local_devices)
        state = replicate(stack(states))
        iterators = [batches_of(c.seed)(0, setup.total_steps) for c in configs]
        every = config.diagnostics.every_steps
        pending, epoch_start = [], time.perf_counter()
        queue = parallel.StepQueue(config.steps_in_flight)
        for step in range(1, setup.total_steps + 1):
            member_batches = [next(it) for it in iterators]
            # [devices, members, per-device batch, ...]: pmap takes axis 0, vmap the next.
            batch = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *member_batches)
            state, metrics = p_train_step(state, batch)
            queue.add(metrics)
            pending.append(metrics)
            diagnose = (every and step % every == 0) or step == setup.total_steps
            epoch_end = step % setup.steps_per_epoch == 0
            if not (diagnose or epoch_end):
                continue
            host_state = first_replica(state)
            if epoch_end:
                fetched, pending = first_replica(pending), []
            for k, member in enumerate(members):
                if not member.live:
                    continue
                member_state = replicate(_one(host_state, k))
                if diagnose:
                    member.record.log_diagnostics(step, diagnostics.rows(
                        step, first_replica(p_signal_step(member_state, member_batches[k])),
                        _one(host_state.batch_stats, k), percentiles))
                if epoch_end:
                    _end_epoch(member, step, k, fetched, member_state, setup, elapsed(),
                               time.perf_counter() - epoch_start)
            if epoch_end:
                epoch_start = time.perf_counter()
            if not any(member.live for member in members):
                break
        for member in members:
            if member.live:
                member.record.finish({
                    **loop.complete_summary(member.config, setup, member.history, num_params,
                                             elapsed(), []),
                    'vmapped_seeds': [c.seed for c in configs]})
    except BaseException as e:
        for member in members:
            if member.live:
                member.record.finish({'status': records.FAILED,
                                      'error': f'{type(e).__name__}: {e}',
                                      'epochs_completed': len(member.history),
                                      'wall_time_s': elapsed(),
                                      'environment': run_record.environment()})
        raise
    host_state = first_replica(state)
    return [_one(host_state, k) for k in range(len(members))]


def _end_epoch(member: _Member, step: int, k: int, fetched: list[dict], member_state,
               setup, wall_time_s: float, epoch_time_s: float) -> None:
    """Member k's epoch: its metrics, divergence check, evaluation and record row."""
    bad_step = member.epoch_metrics.extend([_one(metrics, k) for metrics in fetched])
    if bad_step is not None:
        member.record.finish(loop.diverged_summary(member.history, member.epoch_metrics,
                                                    bad_step, wall_time_s))
        member.live = False
        logging.warning('seed %d diverged at step %d', member.config.seed, bad_step)
        return
    row = {'epoch': step // setup.steps_per_epoch, 'step': step,
           **member.epoch_metrics.means(), **member.evaluate_all(member_state),
           'learning_rate': float(setup.schedule(step - 1)), 'epoch_time_s': epoch_time_s}
    member.history.append(row)
    member.record.log_epoch(row)
    logging.info('seed %d, epoch %d: test accuracy %.4f', member.config.seed, row['epoch'],
                 row['test_accuracy'])
    member.epoch_metrics = loop.EpochMetrics(step + 1)


def train_group(runs) -> None:
    """A sweep's group (declare.Run objects): one run alone, several seeds vmapped."""
    if len(runs) == 1:
        loop.train_and_evaluate(runs[0].config, runs[0].workdir)
    else:
        train_seeds([run.config for run in runs], [run.workdir for run in runs])
