"""Throughput of the project's own training step, measured side by side.

Every figure comes from the real pieces train_and_evaluate uses (train.prepare,
train.initial_state, train.train_step, data.train_batches), compiled before timing, on
batches already on the host, so it measures the step and not the input pipeline.
"""

import dataclasses
import time

import jax
import numpy as np
from flax import jax_utils

from bn_study import data, train, vmap_seeds


@dataclasses.dataclass(frozen=True)
class Timing:
    name: str
    examples_per_s: float
    step_time_ms: float  # per compiled call
    compile_s: float


def _time(step_fn, state, batches: list, examples_per_call: int, name: str) -> Timing:
    """Compiles with the first batch, then times a pass over the rest."""
    start = time.perf_counter()
    state, metrics = step_fn(state, batches[0])
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for batch in batches[1:]:
        state, metrics = step_fn(state, batch)
    jax.block_until_ready((state, metrics))
    seconds = (time.perf_counter() - start) / (len(batches) - 1)
    return Timing(name, examples_per_call / seconds, seconds * 1e3, compile_s)


def vmapped_against_sequential(configs, workdir: str, steps: int) -> list[Timing]:
    """K seeds trained one step each, by K calls of the solo pmapped step and by one call of
    the vmapped step (vmap_seeds); returns both timings."""
    vmap_seeds.check_seed_group(configs)
    setup = train.prepare(configs[0], workdir)
    config = configs[0]
    augment = data.augmentation(config.data, setup.info)
    member_batches = [list(data.train_batches(
        setup.shards, setup.info, augment, config.data.crop_padding, config.batch_size,
        setup.layout, c.seed, 0, steps + 1)) for c in configs]
    states = [train.initial_state(c, setup) for c in configs]
    pmap = lambda fn: jax.pmap(fn, axis_name=train.BATCH_AXIS, devices=setup.devices,
                               donate_argnums=(0,))
    replicate = lambda tree: jax_utils.replicate(tree, setup.local_devices)
    solo_step = pmap(train.train_step)
    members = len(configs)

    def sequential(stacked_states, step_batches):
        new_states, metrics = [], []
        for state, batch in zip(stacked_states, step_batches):
            state, m = solo_step(state, batch)
            new_states.append(state)
            metrics.append(m)
        return new_states, metrics
    sequential_batches = [list(step) for step in zip(*member_batches)]
    timings = [_time(sequential, [replicate(s) for s in states], sequential_batches,
                     members * config.batch_size, f'sequential x{members}')]
    stacked = [jax.tree.map(lambda *xs: np.stack(xs, axis=1), *step)
               for step in zip(*member_batches)]
    timings.append(_time(pmap(jax.vmap(train.train_step)), replicate(vmap_seeds.stack(states)),
                         stacked, members * config.batch_size, f'vmapped x{members}'))
    return timings
