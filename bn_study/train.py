"""TrainState, the pure pmapped train step, and train_and_evaluate(config, workdir)."""

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import jax_utils
from flax.training import train_state

from bn_study import choices, data, diagnostics, evaluation, models, norms, optim, records

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


def create_train_state(model, rng, image_shape, make_tx) -> TrainState:
    """Initialises parameters and batch statistics; `make_tx(params)` builds the optimizer."""
    variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables['params']
    batch_stats = variables['batch_stats'] if 'batch_stats' in variables else {}
    return TrainState.create(apply_fn=model.apply, params=params, tx=make_tx(params),
                             batch_stats=batch_stats)


def unreplicate(tree):
    """Device 0's copy. (flax's unreplicate keeps the device axis when pmapping 1 of N.)"""
    return jax.tree.map(lambda x: x[0], tree)


def select_devices(config: ml_collections.ConfigDict) -> list:
    """The local devices to pmap over, splitting the CPU into config.cpu_devices if asked."""
    if config.cpu_devices:
        try:
            jax.config.update('jax_num_cpu_devices', config.cpu_devices)
        except RuntimeError:  # JAX has started; acceptable only if it started the same way
            if len(jax.devices('cpu')) != config.cpu_devices:
                raise choices.ConfigError(
                    f'config.cpu_devices={config.cpu_devices} but JAX already started with '
                    f'{len(jax.devices("cpu"))} CPU devices; it must be set before the '
                    'first JAX computation of the process, or left 0') from None
    devices = jax.local_devices()
    wanted = config.num_devices or len(devices)
    if wanted > len(devices):
        raise choices.ConfigError(
            f'config.num_devices={wanted} but only {len(devices)} local devices exist; '
            f'choose 0 (all) or 1..{len(devices)}')
    return devices[:wanted]


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

    def __init__(self, total_steps: int, global_batch: int, every: int, record):
        self.total_steps, self.global_batch, self.every = total_steps, global_batch, every
        self.record = record
        self.last_step, self.last_time = 0, time.perf_counter()

    def after_step(self, step: int, metrics: dict) -> None:
        if not self.every or step % self.every:
            return
        loss = float(jax.device_get(metrics['loss'])[0])  # waits for this step: rates are real
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


def _diverged_summary(history, step_metrics, bad: int, bad_step: int, start: float) -> dict:
    """The record of a run stopped by a NaN or inf: where, and the last finite metrics.

    Divergence is checked once per epoch (the step metrics are fetched then), so up to one
    epoch of steps past the first non-finite one is computed and discarded.
    """
    last_step = step_metrics[bad - 1] if bad else None
    return {
        'status': records.DIVERGED, 'diverged_at_step': bad_step,
        'epochs_completed': len(history),
        'last_finite_epoch': history[-1] if history else None,
        'last_finite_step': None if last_step is None else {
            'step': bad_step - 1, 'train_loss': float(last_step['loss'][0]),
            'train_accuracy': float(last_step['accuracy'][0])},
        'wall_time_s': time.perf_counter() - start, 'environment': records.environment(),
    }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Trains, evaluates every epoch, and writes the run's record; returns the final state."""
    choices.validate(config)
    if jax.process_count() > 1:  # every host would read the whole training split
        raise choices.ConfigError('multi-host runs are not supported yet (issue 4): the '
                                  'training split is not sharded per host')
    devices = select_devices(config)
    num_devices = len(devices)
    per_device_batch = choices.check_batch_split(config.batch_size, num_devices)
    choices.check_batch_split(config.eval.batch_size, num_devices, 'eval.batch_size')
    choices.check_ghost_batch(config.norm, per_device_batch)
    builder = data.load_builder(config.data)
    info = data.DATASETS[config.data.name]
    steps_per_epoch = data.num_examples(builder, 'train') // config.batch_size
    if steps_per_epoch == 0:
        raise choices.ConfigError(
            f'config.batch_size={config.batch_size} exceeds the '
            f'{data.num_examples(builder, "train")} training examples')
    total_steps = steps_per_epoch * config.num_epochs
    model = models.build_model(config.model, config.norm, info.num_classes)
    _check_model_builds(model, info.image_shape)

    record = records.RunRecord(workdir, writer=jax.process_index() == 0)
    record.start(config)
    start = time.perf_counter()
    history = []
    try:
        schedule = optim.make_schedule(config.schedule, config.optimizer.learning_rate,
                                       steps_per_epoch, total_steps)
        state = create_train_state(
            model, jax.random.PRNGKey(config.seed), info.image_shape,
            lambda params: optim.make_optimizer(config.optimizer, schedule, params))
        num_params = sum(x.size for x in jax.tree.leaves(state.params))
        uses_batch_stats = bool(jax.tree.leaves(state.batch_stats))
        state = jax_utils.replicate(state, devices)
        p_train_step = jax.pmap(train_step, axis_name=BATCH_AXIS, devices=devices,
                                donate_argnums=(0,))
        p_signal_step = jax.pmap(diagnostics.signal_step, axis_name=BATCH_AXIS, devices=devices)
        evaluate_all = evaluation.make_evaluator(config, builder, info, devices,
                                                 uses_batch_stats)
        train_iter = data.train_batches(builder, info, config.batch_size, num_devices,
                                        config.seed)
        every = config.diagnostics.every_steps
        progress = Progress(total_steps, config.batch_size, config.progress_every_steps, record)

        step = 0
        for epoch in range(1, config.num_epochs + 1):
            epoch_start = time.perf_counter()
            step_metrics = []
            for _ in range(steps_per_epoch):
                batch = next(train_iter)
                state, metrics = p_train_step(state, batch)
                step += 1
                step_metrics.append(metrics)  # stays on device: no host sync per step
                progress.after_step(step, metrics)
                if (every and step % every == 0) or step == total_steps:
                    record.log_diagnostics(step, diagnostics.rows(
                        step, p_signal_step(state, batch), state.batch_stats))
            step_metrics = jax.device_get(step_metrics)
            finite = [bool(m['finite'][0]) for m in step_metrics]
            if not all(finite):
                bad = finite.index(False)
                record.finish(_diverged_summary(history, step_metrics, bad,
                                                step - steps_per_epoch + bad + 1, start))
                logging.warning('diverged at step %d', step - steps_per_epoch + bad + 1)
                return unreplicate(state)
            train = jax.tree.map(lambda *xs: float(np.mean([x[0] for x in xs])),
                                 *step_metrics)
            row = {'epoch': epoch, 'step': step,
                   'train_loss': train['loss'], 'train_accuracy': train['accuracy'],
                   **evaluate_all(state),
                   'learning_rate': float(schedule(step - 1)),
                   'epoch_time_s': time.perf_counter() - epoch_start}
            history.append(row)
            record.log_epoch(row)
            logging.info('epoch %d: %s', epoch, {k: round(v, 4) for k, v in row.items()})

        record.finish({
            'status': records.COMPLETE, **_final_summary(config, history),
            'epochs': config.num_epochs, 'steps': total_steps, 'num_params': int(num_params),
            'wall_time_s': time.perf_counter() - start,
            'normalization': norms.describe(config, models.has_norm_layers(config.model),
                                            num_devices),
            'environment': records.environment(),
        })
    except BaseException as e:
        record.finish({'status': records.FAILED, 'error': f'{type(e).__name__}: {e}',
                       'epochs_completed': len(history),
                       'wall_time_s': time.perf_counter() - start,
                       'environment': records.environment()})
        raise
    return unreplicate(state)
