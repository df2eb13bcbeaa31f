"""What one benchmark process measures, with the real pieces train_and_evaluate uses: the
pmapped training step (loop.pmapped_train_step), the EMA evaluation step, and the input
pipeline (the run's data.TrainFeed), on this process's devices.

Every figure is taken after the compiling call and `warmup` more; the training step is fed
host batches as in training, so the copy to the devices is included.
"""

import itertools
import resource
import time

import jax
from flax import jax_utils

from bn_study.training import data, evaluation, loop, parallel, vmap_seeds


def _timed(fn, calls: int, in_flight: int) -> float:
    """Seconds per call of fn() over `calls` calls, at most `in_flight` of them unfinished
    at a time (as training dispatches them), after waiting for the last result."""
    start = time.perf_counter()
    queue = parallel.StepQueue(in_flight)
    result = None
    for _ in range(calls):
        result = fn()
        queue.add(result)
    jax.block_until_ready(result)
    return (time.perf_counter() - start) / max(calls, 1)


def _compiled(fn) -> float:
    """Seconds the first (compiling) call of fn() takes."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def peak_memory() -> dict:
    """Peak host RSS of this process, and the first device's peak allocation where the
    platform reports it (GPU, TPU; not the CPU)."""
    figures = {'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = jax.local_devices()[0].memory_stats() or {}
    if 'peak_bytes_in_use' in stats:
        figures['device_peak_mb'] = stats['peak_bytes_in_use'] / 2**20
    return figures


def measure(config, workdir: str, steps: int, warmup: int) -> dict:
    """Training step, evaluation step and input pipeline figures for `config`."""
    setup = loop.prepare(config, workdir)
    calls = warmup + steps + 1

    start = time.perf_counter()
    batches = setup.feed(config).batches(0, calls)
    first = next(batches)
    pipeline_start_s = time.perf_counter() - start
    start = time.perf_counter()
    batches = [first, *batches]
    pipeline_s = (time.perf_counter() - start) / (calls - 1)

    state = jax_utils.replicate(loop.initial_state(config, setup), setup.local_devices)
    step = loop.pmapped_train_step(setup.devices)
    feed = itertools.cycle(batches)

    def train_call():
        nonlocal state
        state, metrics = step(state, next(feed))
        return metrics
    train_compile_s = _compiled(train_call)
    _timed(train_call, warmup, config.steps_in_flight)
    step_s = _timed(train_call, steps, config.steps_in_flight)

    test = data.eval_batches(data.read_split(setup.builder, 'test'), setup.info,
                             config.eval.batch_size, setup.layout)
    eval_step = parallel.pmap(evaluation.eval_step, setup.devices)
    eval_call = lambda: evaluation.evaluate(eval_step, state, test, config.steps_in_flight)
    eval_compile_s = _compiled(eval_call)
    eval_s = _timed(eval_call, max(1, steps // 4), config.steps_in_flight)
    test_examples = len(test) * config.eval.batch_size  # a padded last batch counts whole

    device = setup.devices[0]
    return {
        'platform': device.platform, 'device_kind': device.device_kind,
        'devices': len(setup.devices), 'batch_size': config.batch_size, 'steps': steps,
        'train_examples_per_s': config.batch_size / step_s, 'train_step_ms': step_s * 1e3,
        'train_compile_s': train_compile_s,
        'eval_examples_per_s': test_examples / eval_s, 'eval_compile_s': eval_compile_s,
        'pipeline_examples_per_s': config.batch_size / pipeline_s,
        'pipeline_start_s': pipeline_start_s,
        **peak_memory(),
    }


def vmapped_against_sequential(configs, workdir: str, steps: int, warmup: int) -> dict:
    """K seeds trained one step each, by K calls of the solo pmapped step and by one call of
    the vmapped step (vmap_seeds); examples/s of both."""
    vmap_seeds.check_seed_group(configs)
    setup = loop.prepare(configs[0], workdir)
    config = configs[0]
    calls = warmup + steps + 1
    member_batches = [list(setup.feed(c).batches(0, calls)) for c in configs]
    replicate = lambda tree: jax_utils.replicate(tree, setup.local_devices)
    states = [loop.initial_state(c, setup) for c in configs]
    examples = len(configs) * config.batch_size

    solo_step = loop.pmapped_train_step(setup.devices)
    solo_states = [replicate(s) for s in states]
    solo_feed = itertools.cycle(list(zip(*member_batches)))
    # Each of the K solo steps counts against steps_in_flight, as in training.
    solo_queue = parallel.StepQueue(config.steps_in_flight)

    def sequential_call():
        step_batches = next(solo_feed)
        metrics = []
        for k, batch in enumerate(step_batches):
            solo_states[k], m = solo_step(solo_states[k], batch)
            solo_queue.add(m)
            metrics.append(m)
        return metrics

    vmapped_step = vmap_seeds.pmapped_group_step(setup.devices)
    vmapped_state = replicate(vmap_seeds.stack(states))
    stacked_feed = itertools.cycle([vmap_seeds.stack_batches(list(step))
                                    for step in zip(*member_batches)])

    def vmapped_call():
        nonlocal vmapped_state
        vmapped_state, metrics = vmapped_step(vmapped_state, next(stacked_feed))
        return metrics

    figures = {'members': len(configs), 'devices': len(setup.devices)}
    for name, call in (('sequential', sequential_call), ('vmapped', vmapped_call)):
        figures[f'{name}_compile_s'] = _compiled(call)
        _timed(call, warmup, config.steps_in_flight)
        figures[f'{name}_examples_per_s'] = examples / _timed(call, steps,
                                                              config.steps_in_flight)
    return figures
