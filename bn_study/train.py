"""TrainState, the pure pmapped train and eval steps, and train_and_evaluate(config, workdir)."""

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import jax_utils
from flax.training import train_state

from bn_study import choices, data, models, norms, optim, records

BATCH_AXIS = norms.BATCH_AXIS


class TrainState(train_state.TrainState):
    """Flax's TrainState plus the mutable `batch_stats` collection (empty without BN)."""
    batch_stats: Any


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    """One SGD step on one device's slice; pmapped with axis_name=BATCH_AXIS."""
    def loss_fn(params):
        logits, updates = state.apply_fn(
            {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
            train=True, mutable=['batch_stats'])
        loss = cross_entropy(logits, batch['label']).mean()
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
    return state, metrics


def eval_step(state: TrainState, batch: dict) -> dict:
    """Sums of loss, correct predictions and real examples, over all devices."""
    logits = state.apply_fn({'params': state.params, 'batch_stats': state.batch_stats},
                            batch['image'], train=False)
    mask = batch['mask']
    correct = (jnp.argmax(logits, -1) == batch['label']) * mask
    sums = {'loss': jnp.sum(cross_entropy(logits, batch['label']) * mask),
            'correct': jnp.sum(correct), 'count': jnp.sum(mask)}
    return jax.lax.psum(sums, BATCH_AXIS)


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


def evaluate(p_eval_step, state, batches) -> dict:
    """Test loss and accuracy over the whole (padded) test split."""
    sums = [p_eval_step(state, batch) for batch in batches]
    totals = jax.tree.map(lambda *xs: float(np.sum([x[0] for x in xs])), *jax.device_get(sums))
    return {'test_loss': totals['loss'] / totals['count'],
            'test_accuracy': totals['correct'] / totals['count']}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Trains, evaluates every epoch, and writes the run's record; returns the final state."""
    choices.validate(config)
    if jax.process_count() > 1:  # every host would read the whole training split
        raise choices.ConfigError('multi-host runs are not supported yet (issue 4): the '
                                  'training split is not sharded per host')
    devices = select_devices(config)
    num_devices = len(devices)
    choices.check_batch_split(config.batch_size, num_devices)
    choices.check_batch_split(config.eval_batch_size, num_devices, 'eval_batch_size')
    builder = data.load_builder(config.data)
    info = data.DATASETS[config.data.name]
    steps_per_epoch = data.num_examples(builder, 'train') // config.batch_size
    if steps_per_epoch == 0:
        raise choices.ConfigError(
            f'config.batch_size={config.batch_size} exceeds the '
            f'{data.num_examples(builder, "train")} training examples')
    total_steps = steps_per_epoch * config.num_epochs

    record = records.RunRecord(workdir, writer=jax.process_index() == 0)
    record.start(config)
    start = time.perf_counter()
    history = []
    try:
        model = models.build_model(config.model, config.norm, info.num_classes)
        schedule = optim.make_schedule(config.schedule, config.optimizer.learning_rate,
                                       steps_per_epoch, total_steps)
        state = create_train_state(
            model, jax.random.PRNGKey(config.seed), info.image_shape,
            lambda params: optim.make_optimizer(config.optimizer, schedule, params))
        num_params = sum(x.size for x in jax.tree.leaves(state.params))
        state = jax_utils.replicate(state, devices)
        p_train_step = jax.pmap(train_step, axis_name=BATCH_AXIS, devices=devices,
                                donate_argnums=(0,))
        p_eval_step = jax.pmap(eval_step, axis_name=BATCH_AXIS, devices=devices)
        train_iter = data.train_batches(builder, info, config.batch_size, num_devices,
                                        config.seed)
        test_batches = data.eval_batches(builder, info, config.eval_batch_size, num_devices)

        for epoch in range(1, config.num_epochs + 1):
            epoch_start = time.perf_counter()
            step_metrics = []
            for _ in range(steps_per_epoch):
                state, metrics = p_train_step(state, next(train_iter))
                step_metrics.append(metrics)  # stays on device: no host sync per step
            train = jax.tree.map(lambda *xs: float(np.mean([x[0] for x in xs])),
                                 *jax.device_get(step_metrics))
            row = {'epoch': epoch, 'step': epoch * steps_per_epoch,
                   'train_loss': train['loss'], 'train_accuracy': train['accuracy'],
                   **evaluate(p_eval_step, state, test_batches),
                   'learning_rate': float(schedule(epoch * steps_per_epoch - 1)),
                   'epoch_time_s': time.perf_counter() - epoch_start}
            history.append(row)
            record.log_epoch(row)
            logging.info('epoch %d: %s', epoch, {k: round(v, 4) for k, v in row.items()})

        best = max(history, key=lambda r: r['test_accuracy'])
        record.finish({
            'status': records.COMPLETE,
            'final_test_accuracy': history[-1]['test_accuracy'],
            'final_test_loss': history[-1]['test_loss'],
            'final_train_loss': history[-1]['train_loss'],
            'final_train_accuracy': history[-1]['train_accuracy'],
            'best_test_accuracy': best['test_accuracy'], 'best_epoch': best['epoch'],
            'epochs': config.num_epochs, 'steps': total_steps, 'num_params': int(num_params),
            'wall_time_s': time.perf_counter() - start,
            'bn_statistics': norms.describe_batch_stats(
                config.model, config.norm, config.batch_size, num_devices),
            'environment': records.environment(),
        })
    except BaseException as e:
        record.finish({'status': records.FAILED, 'error': f'{type(e).__name__}: {e}',
                       'epochs_completed': len(history),
                       'wall_time_s': time.perf_counter() - start,
                       'environment': records.environment()})
        raise
    return unreplicate(state)
