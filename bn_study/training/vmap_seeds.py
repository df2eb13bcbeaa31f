"""Several seeds of one configuration in one compiled program: jax.vmap over independent runs,
each with its own parameters, batch statistics, optimizer state and data order.

The step is the project's own train_step, vmapped inside the pmap: its collectives
(gradients, BN statistics) still pool over devices only, never across seeds, so each member
computes what it would alone, up to floating-point rounding of the batched kernels. The
loop is loop.train_runs, the one a run alone goes through, with the Group lanes below: each
member writes its own record, evaluated, diagnosed and judged for divergence on its own; a
diverged member stops being recorded while the others go on.

Not built: mid-run checkpoints. A group saves none, so a killed group starts again from
step 0 (the sweep's next_action sees no checkpoint); its records say `vmapped_seeds`.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import jax_utils

from bn_study import errors, records
from bn_study.training import loop, parallel
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


def stack_batches(batches: list[dict]) -> dict:
    """The members' batches of one step as one: [devices, members, per-device batch, ...]
    (pmap takes axis 0, vmap the next)."""
    return jax.tree.map(lambda *xs: np.stack(xs, axis=1), *batches)


class Group:
    """loop.train_runs' lanes for vmapped seeds: every leaf of the state, batch and metrics
    has a member axis after the device axis (see loop.Solo for what each method does)."""
    reports_progress = False  # as before the loops were one: no progress reports

    def __init__(self, setup: loop.Setup, seeds: list[int]):
        self.setup, self.size = setup, len(seeds)
        self.complete_extra = {'vmapped_seeds': list(seeds)}

    def _replicate(self, tree):
        return jax_utils.replicate(tree, self.setup.local_devices)

    def step(self):
        return pmapped_group_step(self.setup.devices)

    def place(self, states: list):
        return self._replicate(stack(states))

    def batch(self, batches: list) -> dict:
        return stack_batches(batches)

    def members(self, state):
        """k -> member k's state, replicated; the state is read to the host once, and each
        member's copy made once, on first use."""
        host, replicated = [], {}

        def member(k):
            if k not in replicated:
                if not host:
                    host.append(first_replica(state))
                replicated[k] = self._replicate(_one(host[0], k))
            return replicated[k]
        return member

    def metrics(self, metrics: dict, k: int) -> dict:
        return _one(metrics, k)

    def finals(self, state) -> list:
        host = first_replica(state)
        return [_one(host, k) for k in range(self.size)]


def train_seeds(configs: list[ml_collections.ConfigDict], workdirs: list) -> list:
    """Trains the members together and writes each one's record as train_and_evaluate would;
    returns their final states."""
    check_seed_group(configs)
    setup = loop.prepare(configs[0], workdirs[0])
    for config, workdir in zip(configs[1:], workdirs[1:]):
        records.check_resumable(workdir, config)
    states = [loop.initial_state(config, setup) for config in configs]
    runs = [loop.Run(config, workdir, setup.feed(config), setup.steps_per_epoch)
            for config, workdir in zip(configs, workdirs)]
    return loop.train_runs(setup, runs, states, Group(setup, [c.seed for c in configs]))


def train_group(runs) -> None:
    """A sweep's group (declare.Run objects): one run alone, several seeds vmapped."""
    if len(runs) == 1:
        loop.train_and_evaluate(runs[0].config, runs[0].workdir)
    else:
        train_seeds([run.config for run in runs], [run.workdir for run in runs])
