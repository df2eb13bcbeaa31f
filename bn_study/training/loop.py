"""TrainState, the pure pmapped train step, and train_and_evaluate(config, workdir)."""

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import jax_utils
from flax.training import train_state

from bn_study.training import checkpoint
from bn_study.training import data
from bn_study.training import diagnostics
from bn_study.training import evaluation
from bn_study.nn import models
from bn_study.nn import norms
from bn_study.training import optim
from bn_study import records
from bn_study.training import norm_record, run_record
from bn_study import errors
from bn_study import schema
from bn_study.training import parallel
from bn_study.training.parallel import first_replica, select_devices, unreplicate

BATCH_AXIS = norms.BATCH_AXIS


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the mutable `batch_stats` collection (empty without BN)."""
    batch_stats: Any


def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """One SGD step on one device's slice; pmapped with axis_name=BATCH_AXIS."""
    def loss_fn(params):
        logits, updates = state.apply_fn(
            {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
            train=True, mutable=['batch_stats'])
        loss = evaluation.cross_entropy(logits, batch['label']).mean()
        return loss, (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    # Every device holds an equal slice, so the mean of per-device means is the global mean.
    grads = jax.lax.pmean(grads, BATCH_AXIS)
    # With global statistics the replicas already agree; with per-device statistics this
    # keeps one set of running averages, so evaluation sees the same state on every device.
    batch_stats = jax.lax.pmean(batch_stats, BATCH_AXIS)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    metrics = jax.lax.pmean({'loss': loss, 'accuracy': accuracy}, BATCH_AXIS)
    # Replicas hold the same parameters and the pooled loss, so every device agrees.
    params_finite = jnp.all(jnp.array([jnp.isfinite(p).all()
                                       for p in jax.tree.leaves(state.params)]))
    metrics['finite'] = jnp.isfinite(metrics['loss']) & params_finite
    return state, metrics


def pmapped_train_step(devices: list):
    """The training step as every run (and the benchmark) calls it."""
    return parallel.pmap(train_step, devices, donate_state=True)


def create_train_state(model, rng, image_shape, make_tx) -> TrainState:
    """Initialises parameters and batch statistics; `make_tx(params)` builds the optimizer."""
    # Jitted: one compile instead of one per op (about 2 s less per run here; the same values).
    variables = jax.jit(model.init, static_argnames='train')(
        rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables['params']
    batch_stats = variables['batch_stats'] if 'batch_stats' in variables else {}
    return TrainState.create(apply_fn=model.apply, params=params, tx=make_tx(params),
                             batch_stats=batch_stats)


def _check_model_builds(model, image_shape) -> None:
    """Shape-checks the model (group counts, norms on dense layers) before any record exists."""
    jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                      jnp.zeros((2, *image_shape), jnp.float32), train=False))


def _final_summary(config, history: list[dict]) -> dict:
    """Final and best test metrics, for the headline and for every evaluation kind."""
    summary = {'final_train_loss': history[-1]['train_loss'],
               'final_train_accuracy': history[-1]['train_accuracy']}
    for suffix in ['', *(f'_{kind}' for kind in config.eval.stats)]:
        best = max(history, key=lambda r: r[f'test_accuracy{suffix}'])
        summary[f'final_test_accuracy{suffix}'] = history[-1][f'test_accuracy{suffix}']
        summary[f'final_test_loss{suffix}'] = history[-1][f'test_loss{suffix}']
        summary[f'best_test_accuracy{suffix}'] = best[f'test_accuracy{suffix}']
        summary[f'best_epoch{suffix}'] = best['epoch']
    return summary


class Progress:
    """Every `every` steps: steps/s, examples/s and ETA since the last report, and the loss."""

    def __init__(self, first_step: int, total_steps: int, global_batch: int, every: int,
                 record):
        self.total_steps, self.global_batch, self.every = total_steps, global_batch, every
        self.record = record
        self.last_step, self.last_time = first_step, time.perf_counter()

    def after_step(self, step: int, metrics: dict) -> None:
        if not self.every or step % self.every:
            return
        loss = float(first_replica(metrics['loss']))  # waits for this step: rates are real
        now = time.perf_counter()
        steps_per_s = (step - self.last_step) / (now - self.last_time)
        report = {'steps_per_s': steps_per_s,
                  'examples_per_s': steps_per_s * self.global_batch,
                  'eta_s': (self.total_steps - step) / steps_per_s, 'train_loss': loss}
        logging.info('step %d/%d: %.1f steps/s, %.0f examples/s, ETA %.0f s, loss %.4f', step,
                     self.total_steps, steps_per_s, report['examples_per_s'], report['eta_s'],
                     loss)
        self.record.log_progress(step, report)
        self.last_step, self.last_time = step, now


class EpochMetrics:
    """The current epoch's per-step train loss and accuracy.

    Step metrics stay on the devices until fetch() (at epoch ends and checkpoints), so
    training does not wait on the host every step. They travel in checkpoints, so a resumed
    epoch reports the same means as an uninterrupted one.
    """

    def __init__(self, first_step: int, losses=(), accuracies=()):
        self.first_step = first_step  # the epoch's first step, counted from 1
        self.losses = [np.float32(x) for x in losses]
        self.accuracies = [np.float32(x) for x in accuracies]
        self.pending = []

    def add(self, metrics: dict) -> None:
        self.pending.append(metrics)

    def fetch(self) -> int | None:
        """Moves pending metrics to the host; returns the first non-finite step, if any."""
        fetched, self.pending = first_replica(self.pending), []
        return self.extend(fetched)

    def extend(self, fetched: list[dict]) -> int | None:
        """Appends steps' metrics from the host; returns the first non-finite step, if any."""
        for metrics in fetched:
            if not metrics['finite']:
                return self.first_step + len(self.losses)
            self.losses.append(metrics['loss'])
            self.accuracies.append(metrics['accuracy'])
        return None

    def means(self) -> dict:
        return {'train_loss': float(np.mean(np.asarray(self.losses, np.float32))),
                'train_accuracy': float(np.mean(np.asarray(self.accuracies, np.float32)))}

    def last(self) -> dict | None:
        if not self.losses:
            return None
        return {'step': self.first_step + len(self.losses) - 1,
                'train_loss': float(self.losses[-1]),
                'train_accuracy': float(self.accuracies[-1])}

    def to_json(self) -> dict:
        return {'epoch_losses': [float(x) for x in self.losses],
                'epoch_accuracies': [float(x) for x in self.accuracies]}


def diverged_summary(history, epoch_metrics: EpochMetrics, bad_step: int,
                     wall_time_s: float) -> dict:
    """The record of a run stopped by a NaN or inf: where, and the last finite metrics.

    Divergence is checked at each epoch end and checkpoint (when step metrics are fetched),
    so the steps computed past the first non-finite one are discarded.
    """
    return {
        'status': records.DIVERGED, 'diverged_at_step': bad_step,
        'epochs_completed': len(history),
        'last_finite_epoch': history[-1] if history else None,
        'last_finite_step': epoch_metrics.last(),
        'wall_time_s': wall_time_s, 'environment': run_record.environment(),
    }


# The run's progress as checkpoints carry it (EpochMetrics.to_json plus the run's history);
# a run with no checkpoint starts from this.
FRESH_PROGRESS = {'epoch_losses': [], 'epoch_accuracies': [], 'resumed_at_steps': [],
                  'wall_time_s': 0.0}


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a run needs before its state: devices, data and model, checked and loaded."""
    devices: list
    local_devices: list
    layout: data.Layout
    builder: Any
    info: data.DatasetInfo
    shards: data.TrainShards
    steps_per_epoch: int
    total_steps: int
    model: Any
    schedule: Any


def prepare(config: ml_collections.ConfigDict, workdir) -> Setup:
    """Checks everything that can be checked before a record exists, then loads the data."""
    schema.validate(config)
    parallel.use_compilation_cache(config.compilation_cache_dir)
    devices, local_devices = select_devices(config)
    layout = data.Layout(jax.process_index(), jax.process_count(), len(local_devices))
    per_device_batch = schema.check_batch_split(config.batch_size, len(devices))
    schema.check_batch_split(config.eval.batch_size, len(devices), 'eval.batch_size')
    schema.check_ghost_batch(config.norm, per_device_batch)
    data.check_sharding(config.data.train_shards, config.batch_size, layout.process_count)
    records.check_resumable(workdir, config)  # before a dataset download could start
    builder = parallel.process_zero_first(lambda: data.load_builder(config.data))
    info = data.dataset_info(config.data, builder)
    shards = data.read_train_shards(builder, config.data.train_shards, layout)
    steps_per_epoch = shards.steps_per_epoch(config.batch_size)
    if steps_per_epoch == 0:
        raise errors.ConfigError(
            f'config.batch_size={config.batch_size} exceeds the training examples '
            f'({shards.shard_size * shards.num_shards} in {shards.num_shards} shards)')
    total_steps = steps_per_epoch * config.num_epochs
    model = models.build_model(config.model, config.norm, info.num_classes)
    _check_model_builds(model, info.image_shape)
    schedule = optim.make_schedule(config.schedule, config.optimizer.learning_rate,
                                   steps_per_epoch, total_steps)
    return Setup(devices, local_devices, layout, builder, info, shards, steps_per_epoch,
                 total_steps, model, schedule)


def initial_state(config: ml_collections.ConfigDict, setup: Setup) -> TrainState:
    return create_train_state(
        setup.model, jax.random.PRNGKey(config.seed), setup.info.image_shape,
        lambda params: optim.make_optimizer(config.optimizer, setup.schedule, params))


def complete_summary(config, setup: Setup, history: list[dict], num_params: int,
                     wall_time_s: float, resumed_at: list[int]) -> dict:
    """The summary of a run that finished every step."""
    return {
        'status': records.COMPLETE, **_final_summary(config, history),
        'epochs': config.num_epochs, 'steps': setup.total_steps, 'num_params': int(num_params),
        'wall_time_s': wall_time_s, 'resumed_at_steps': resumed_at,
        'normalization': norm_record.describe(config, models.has_norm_layers(config.model),
                                        len(setup.devices)),
        'environment': run_record.environment(),
    }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> TrainState:
    """Trains, evaluates every epoch, checkpoints, and writes the run's record; returns the
    final state. A workdir holding a checkpoint of the same config resumes from it."""
    setup = prepare(config, workdir)
    devices, local_devices, layout = setup.devices, setup.local_devices, setup.layout
    builder, info, shards = setup.builder, setup.info, setup.shards
    steps_per_epoch, total_steps, schedule = (setup.steps_per_epoch, setup.total_steps,
                                              setup.schedule)
    state = initial_state(config, setup)
    checkpoints = checkpoint.Checkpoints(workdir, config.checkpoint.every_steps,
                                         config.checkpoint.keep)
    restored = checkpoints.restore_latest(state)
    state, saved = restored if restored else (state, FRESH_PROGRESS)
    step = int(state.step)
    if restored:
        logging.info('resuming from the checkpoint at step %d', step)
    record = run_record.RunRecord(workdir, writer=jax.process_index() == 0)
    record.start(config, step if restored else None)
    start = time.perf_counter()
    earlier_time_s = saved['wall_time_s']
    resumed_at = saved['resumed_at_steps'] + ([step] if restored else [])
    history = records.read_metrics(workdir) if restored else []
    try:
        num_params = sum(x.size for x in jax.tree.leaves(state.params))
        uses_batch_stats = bool(jax.tree.leaves(state.batch_stats))
        state = jax_utils.replicate(state, local_devices)
        p_train_step = pmapped_train_step(devices)
        percentiles = tuple(config.diagnostics.percentiles)
        p_signal_step = parallel.pmap(diagnostics.make_signal_step(percentiles), devices)
        augment = data.augmentation(config.data, info)
        batches = lambda first, last: data.train_batches(
            shards, info, augment, config.data.crop_padding, config.batch_size, layout,
            config.seed, first, last)
        evaluate_all = evaluation.make_evaluator(
            config, info, data.read_split(builder, 'test'), batches, devices, layout,
            uses_batch_stats)
        every = config.diagnostics.every_steps
        progress = Progress(step, total_steps, config.batch_size, config.progress_every_steps,
                            record)
        epoch_metrics = EpochMetrics(step - step % steps_per_epoch + 1,
                                     saved['epoch_losses'], saved['epoch_accuracies'])
        train_iter = batches(step, total_steps)
        queue = parallel.StepQueue(config.steps_in_flight)
        epoch_start = time.perf_counter()
        while step < total_steps:
            batch = next(train_iter)
            state, metrics = p_train_step(state, batch)
            queue.add(metrics)
            step += 1
            epoch_metrics.add(metrics)
            progress.after_step(step, metrics)
            if (every and step % every == 0) or step == total_steps:
                record.log_diagnostics(step, diagnostics.rows(
                    step, first_replica(p_signal_step(state, batch)),
                    first_replica(state.batch_stats), percentiles))
            epoch_end = step % steps_per_epoch == 0
            if epoch_end or checkpoints.due(step, total_steps):
                bad_step = epoch_metrics.fetch()
                if bad_step is not None:
                    checkpoints.wait()
                    record.finish(diverged_summary(
                        history, epoch_metrics, bad_step,
                        earlier_time_s + time.perf_counter() - start))
                    logging.warning('diverged at step %d', bad_step)
                    return unreplicate(state)
            if epoch_end:
                row = {'epoch': step // steps_per_epoch, 'step': step, **epoch_metrics.means(),
                       **evaluate_all(state),
                       'learning_rate': float(schedule(step - 1)),
                       'epoch_time_s': time.perf_counter() - epoch_start}
                history.append(row)
                record.log_epoch(row)
                logging.info('epoch %d: %s', row['epoch'],
                             {k: round(v, 4) for k, v in row.items()})
                epoch_metrics = EpochMetrics(step + 1)
                epoch_start = time.perf_counter()
            if checkpoints.due(step, total_steps):
                checkpoints.save(first_replica(state), {
                    **epoch_metrics.to_json(), 'resumed_at_steps': resumed_at,
                    'wall_time_s': earlier_time_s + time.perf_counter() - start})
        checkpoints.wait()
        record.finish(complete_summary(config, setup, history, num_params,
                                       earlier_time_s + time.perf_counter() - start, resumed_at))
    except BaseException as e:
        checkpoints.wait()  # a checkpoint in flight is completed, not left half-written
        record.finish({'status': records.FAILED, 'error': f'{type(e).__name__}: {e}',
                       'epochs_completed': len(history),
                       'wall_time_s': earlier_time_s + time.perf_counter() - start,
                       'environment': run_record.environment()})
        raise
    finally:
        checkpoints.close()
    return unreplicate(state)
