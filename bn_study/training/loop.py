"""TrainState, the pure pmapped train step, and the one training loop.

train_runs is the loop: every step, the diagnostics, each epoch's divergence check,
evaluation and record row, checkpoints, and the failed, diverged and complete summaries.
It trains one or more runs through a Lanes strategy that says how their states share a
program: Solo here (one run; train_and_evaluate), vmap_seeds.Group (seeds vmapped).
"""

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

from bn_study import errors, records, schema
from bn_study.nn import models, norms, placement
from bn_study.training import (
    checkpoint,
    data,
    diagnostics,
    evaluation,
    norm_record,
    optim,
    parallel,
    run_record,
)
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
    """Final metrics, and the epoch validation selects, for the headline and every
    evaluation kind. The selected epoch is the first with the highest validation accuracy;
    its test accuracy is reported, never used to choose (there is no best-on-test figure)."""
    summary = {'final_train_loss': history[-1]['train_loss'],
               'final_train_accuracy': history[-1]['train_accuracy']}
    for suffix in ['', *(f'_{kind}' for kind in config.eval.stats)]:
        for split in evaluation.SPLITS:
            for metric in ('accuracy', 'loss'):
                name = f'{split}_{metric}{suffix}'
                summary[f'final_{name}'] = history[-1][name]
        selected = max(history, key=lambda r: r[f'val_accuracy{suffix}'])
        summary[f'selected_epoch{suffix}'] = selected['epoch']
        summary[f'selected_val_accuracy{suffix}'] = selected[f'val_accuracy{suffix}']
        summary[f'selected_test_accuracy{suffix}'] = selected[f'test_accuracy{suffix}']
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

    Step metrics stay on the devices until the loop fetches them (at epoch ends and
    checkpoints), so training does not wait on the host every step. They travel in
    checkpoints, so a resumed epoch reports the same means as an uninterrupted one.
    """

    def __init__(self, first_step: int, losses=(), accuracies=()):
        self.first_step = first_step  # the epoch's first step, counted from 1
        self.losses = [np.float32(x) for x in losses]
        self.accuracies = [np.float32(x) for x in accuracies]

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
                  'wall_time_s': 0.0, 'initial_val_loss': None}


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a run needs before its state: devices, data and model, checked and loaded."""
    devices: list
    local_devices: list
    layout: data.Layout
    builder: Any
    info: data.DatasetInfo
    shards: data.TrainShards
    validation: tuple  # (images, labels): the validation rows, carved from the training split
    steps_per_epoch: int
    total_steps: int
    model: Any
    schedule: Any  # the learning rate at each step (logged)
    shape: Any  # the same schedule at a peak of 1: optim.make_optimizer's `shape`

    def feed(self, config: ml_collections.ConfigDict) -> data.TrainFeed:
        """The training batches of `config` (this setup's config, or a seed group member's)."""
        return data.TrainFeed.from_config(config, self.shards, self.info, self.layout)


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
    shards, validation = data.read_train_and_validation(
        builder, config.data.validation_fraction, config.data.train_shards, layout)
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
    shape = optim.make_schedule(config.schedule, 1.0, steps_per_epoch, total_steps)
    return Setup(devices, local_devices, layout, builder, info, shards, validation,
                 steps_per_epoch, total_steps, model, schedule, shape)


def initial_state(config: ml_collections.ConfigDict, setup: Setup) -> TrainState:
    return create_train_state(
        setup.model, jax.random.PRNGKey(config.seed), setup.info.image_shape,
        lambda params: optim.make_optimizer(config.optimizer, setup.shape, params))


def complete_summary(config, setup: Setup, history: list[dict], num_params: int,
                     wall_time_s: float, resumed_at: list[int],
                     initial_val_loss: float | None) -> dict:
    """The summary of a run that finished every step."""
    return {
        'status': records.COMPLETE, 'initial_val_loss': initial_val_loss,
        **_final_summary(config, history),
        'epochs': config.num_epochs, 'steps': setup.total_steps, 'num_params': int(num_params),
        'train_examples': int(setup.shards.labels.size * setup.layout.process_count),
        'validation_examples': len(setup.validation[1]),
        'wall_time_s': wall_time_s, 'resumed_at_steps': resumed_at,
        'placement': placement.describe(config.model),
        'gradient_clipping': optim.clipping_record(config.optimizer),
        'normalization': norm_record.describe(config, placement.has_norm_layers(config.model),
                                              len(setup.devices)),
        'environment': run_record.environment(),
    }


class Run:
    """One run's host side: its record, history, current epoch's metrics and evaluator.

    `saved`: the progress its checkpoint carries (FRESH_PROGRESS for a fresh start);
    `resume_step`: the checkpoint's step, or None.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir, feed: data.TrainFeed,
                 steps_per_epoch: int, saved: dict = FRESH_PROGRESS,
                 resume_step: int | None = None):
        self.config, self.workdir, self.feed = config, workdir, feed
        self.resume_step = resume_step
        self.record = run_record.RunRecord(workdir, writer=jax.process_index() == 0)
        self.earlier_time_s = saved['wall_time_s']
        # The validation loss before the first step: the loss a diverged rate counts as in
        # Wortsman et al.'s learning-rate sensitivity (analysis/decide.py).
        self.initial_val_loss = saved.get('initial_val_loss')
        step = resume_step or 0
        self.resumed_at = saved['resumed_at_steps'] + ([step] if resume_step is not None else [])
        # The rows up to the checkpoint: the record keeps those (RunRecord.start) and the
        # run logs the later ones again.
        self.history = ([row for row in records.read_metrics(workdir) if row['step'] <= step]
                        if resume_step is not None else [])
        self.epoch_metrics = EpochMetrics(step - step % steps_per_epoch + 1,
                                          saved['epoch_losses'], saved['epoch_accuracies'])
        self.live = True  # until it diverges
        self.evaluate_all = None  # set by train_runs
        self.started = None

    def wall_time_s(self) -> float:
        return self.earlier_time_s + time.perf_counter() - self.started

    def diverge(self, bad_step: int) -> None:
        self.record.finish({**diverged_summary(self.history, self.epoch_metrics, bad_step,
                                               self.wall_time_s()),
                            'initial_val_loss': self.initial_val_loss})
        self.live = False
        logging.warning('seed %d diverged at step %d', self.config.seed, bad_step)

    def end_epoch(self, step: int, state, setup: Setup, epoch_start: float) -> None:
        """The epoch's row: train means, every evaluation kind, the rate, the time taken."""
        row = {'epoch': step // setup.steps_per_epoch, 'step': step,
               **self.epoch_metrics.means(), **self.evaluate_all(state),
               'learning_rate': float(setup.schedule(step - 1)),
               'epoch_time_s': time.perf_counter() - epoch_start}
        self.history.append(row)
        self.record.log_epoch(row)
        logging.info('seed %d, epoch %d: %s', self.config.seed, row['epoch'],
                     {k: round(v, 4) for k, v in row.items()})
        self.epoch_metrics = EpochMetrics(step + 1)

    def fail(self, error: BaseException) -> None:
        self.record.finish({'status': records.FAILED,
                            'error': f'{type(error).__name__}: {error}',
                            'epochs_completed': len(self.history),
                            'wall_time_s': self.wall_time_s(),
                            'environment': run_record.environment()})


class Solo:
    """Lanes of one run alone: the state is the TrainState replicated over the devices.

    A Lanes strategy tells train_runs how the runs' states share one program:
      step(): the pmapped step, (state, batch) -> (state, metrics);
      place(states): the initial states as that step's state;
      batch(batches): the runs' batches of one step as that step's batch;
      members(state): k -> run k's state, replicated, for the pmapped evaluation and
        diagnostics;
      metrics(metrics, k): run k's part of one step's metrics (host side);
      finals(state): the runs' final states;
      reports_progress: whether steps/s and the loss go to the (first) run's record;
      complete_extra: what every complete summary adds.
    """
    reports_progress = True
    complete_extra = {}

    def __init__(self, setup: Setup):
        self.setup = setup

    def step(self):
        return pmapped_train_step(self.setup.devices)

    def place(self, states: list):
        (state,) = states
        return jax_utils.replicate(state, self.setup.local_devices)

    def batch(self, batches: list) -> dict:
        (batch,) = batches
        return batch

    def members(self, state):
        return lambda k: state

    def metrics(self, metrics: dict, k: int) -> dict:
        return metrics

    def finals(self, state) -> list:
        return [unreplicate(state)]


class _NoCheckpoints:
    """For runs that save none (vmapped seed groups)."""

    def due(self, step: int, total_steps: int) -> bool:
        return False

    def wait(self) -> None:
        pass

    def close(self) -> None:
        pass


def train_runs(setup: Setup, runs: list[Run], states: list, lanes,
               checkpoints: checkpoint.Checkpoints | None = None, first_step: int = 0) -> list:
    """The training loop of every run: trains `runs` from `first_step` through `lanes` (Solo,
    vmap_seeds.Group), evaluates every epoch, writes each run's record, and returns their
    final states.

    A run whose metrics turn non-finite is recorded as diverged (checked at each epoch end
    and checkpoint) and stops being recorded while the others go on; the loop ends when
    none is left. Any exception records every live run as failed and is raised again.
    `checkpoints` (a run alone) are saved when due, with the first run's progress.
    """
    checkpoints = checkpoints or _NoCheckpoints()
    config = runs[0].config
    total_steps, steps_per_epoch = setup.total_steps, setup.steps_per_epoch
    for run in runs:
        run.record.start(run.config, run.resume_step)
    start = time.perf_counter()
    for run in runs:
        run.started = start
    try:
        num_params = sum(x.size for x in jax.tree.leaves(states[0].params))
        uses_batch_stats = bool(jax.tree.leaves(states[0].batch_stats))
        state = lanes.place(states)
        p_train_step = lanes.step()
        percentiles = tuple(config.diagnostics.percentiles)
        p_signal_step = parallel.pmap(diagnostics.make_signal_step(percentiles), setup.devices)
        splits = {'val': setup.validation, 'test': data.read_split(setup.builder, 'test')}
        for run in runs:
            run.evaluate_all = evaluation.make_evaluator(run.config, run.feed, splits,
                                                         setup.devices, uses_batch_stats)
        if first_step == 0:
            member = lanes.members(state)
            for k, run in enumerate(runs):
                run.initial_val_loss = run.evaluate_all(member(k))['val_loss']
        every = config.diagnostics.every_steps
        step = first_step
        progress = Progress(step, total_steps, config.batch_size,
                            config.progress_every_steps if lanes.reports_progress else 0,
                            runs[0].record)
        iterators = [run.feed.batches(step, total_steps) for run in runs]
        queue = parallel.StepQueue(config.steps_in_flight)
        pending, epoch_start = [], time.perf_counter()
        while step < total_steps:
            batches = [next(iterator) for iterator in iterators]
            state, metrics = p_train_step(state, lanes.batch(batches))
            queue.add(metrics)
            step += 1
            pending.append(metrics)
            progress.after_step(step, metrics)
            diagnose = (every and step % every == 0) or step == total_steps
            epoch_end = step % steps_per_epoch == 0
            fetch = epoch_end or checkpoints.due(step, total_steps)
            if not (diagnose or fetch):
                continue
            member = lanes.members(state)
            if fetch:  # the step metrics to the host, for the divergence check and the row
                fetched, pending = first_replica(pending), []
            for k, run in enumerate(runs):
                if not run.live:
                    continue
                if diagnose:
                    run.record.log_diagnostics(step, diagnostics.rows(
                        step, first_replica(p_signal_step(member(k), batches[k])),
                        first_replica(member(k).batch_stats), percentiles))
                if fetch:
                    bad_step = run.epoch_metrics.extend([lanes.metrics(m, k) for m in fetched])
                    if bad_step is not None:
                        checkpoints.wait()
                        run.diverge(bad_step)
                        continue
                if epoch_end:
                    run.end_epoch(step, member(k), setup, epoch_start)
            if not any(run.live for run in runs):
                break
            if epoch_end:
                epoch_start = time.perf_counter()
            if checkpoints.due(step, total_steps):
                run = runs[0]
                checkpoints.save(first_replica(state), {
                    **run.epoch_metrics.to_json(), 'resumed_at_steps': run.resumed_at,
                    'wall_time_s': run.wall_time_s(), 'initial_val_loss': run.initial_val_loss})
        checkpoints.wait()
        for run in runs:
            if run.live:
                run.record.finish({
                    **complete_summary(run.config, setup, run.history, num_params,
                                       run.wall_time_s(), run.resumed_at,
                                       run.initial_val_loss),
                    **lanes.complete_extra})
    except BaseException as e:
        checkpoints.wait()  # a checkpoint in flight is completed, not left half-written
        for run in runs:
            if run.live:
                run.fail(e)
        raise
    finally:
        checkpoints.close()
    return lanes.finals(state)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> TrainState:
    """Trains, evaluates every epoch, checkpoints, and writes the run's record; returns the
    final state. A workdir holding a checkpoint of the same config resumes from it."""
    setup = prepare(config, workdir)
    state = initial_state(config, setup)
    checkpoints = checkpoint.Checkpoints(workdir, config.checkpoint.every_steps,
                                         config.checkpoint.keep)
    restored = checkpoints.restore_latest(state)
    state, saved = restored if restored else (state, FRESH_PROGRESS)
    step = int(state.step)
    if restored:
        logging.info('resuming from the checkpoint at step %d', step)
    run = Run(config, workdir, setup.feed(config), setup.steps_per_epoch, saved,
              step if restored else None)
    (final,) = train_runs(setup, [run], [state], Solo(setup), checkpoints, step)
    return final
