"""Devices and processes: which devices a run pmaps over, multi-host start-up, and reading
one replica of a pmapped result."""

import collections

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from bn_study import errors
from bn_study.nn.norms import BATCH_AXIS


def pmap(fn, devices: list, donate_state: bool = False):
    """fn mapped over `devices` on the axis the norms pool over; donate_state lets the first
    argument's buffers (the train state) be reused for the result."""
    return jax.pmap(fn, axis_name=BATCH_AXIS, devices=devices,
                    donate_argnums=(0,) if donate_state else ())


class StepQueue:
    """Keeps at most `limit` dispatched computations unfinished (0: no limit): add() waits
    for the oldest beyond that, so the host runs ahead of the devices by a bounded amount."""

    def __init__(self, limit: int):
        self.limit, self.pending = limit, collections.deque()

    def add(self, result) -> None:
        if not self.limit:  # nothing to wait for, so nothing to keep alive
            return
        self.pending.append(result)
        while len(self.pending) >= self.limit:
            jax.block_until_ready(self.pending.popleft())


def first_replica(tree):
    """One device's copy on the host, from this process's devices (multi-host safe)."""
    # Each device's shard of a pmapped result keeps a leading axis of length 1.
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)


def unreplicate(tree):
    """Device 0's copy as jax arrays (flax's unreplicate keeps the device axis when pmapping
    1 of N devices, and cannot read arrays spread over several processes)."""
    return jax.tree.map(jnp.asarray, first_replica(tree))


def use_compilation_cache(directory: str) -> None:
    """Turns on JAX's persistent compilation cache in `directory` ('' leaves JAX's default).
    Every program is cached, however quickly it compiled: a run's start-up is dozens of
    small compiles."""
    if directory:
        jax.config.update('jax_compilation_cache_dir', directory)
        jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def split_cpu(cpu_devices: int) -> None:
    """Splits the CPU into `cpu_devices` devices (0: leave JAX's default). Only possible
    before JAX's first computation in the process; later, only if it started that way."""
    if not cpu_devices:
        return
    try:
        jax.config.update('jax_num_cpu_devices', cpu_devices)
    except RuntimeError:  # JAX has started; acceptable only if it started the same way
        if len(jax.local_devices(backend='cpu')) != cpu_devices:
            raise errors.ConfigError(
                f'config.cpu_devices={cpu_devices} but JAX already started with '
                f'{len(jax.local_devices(backend="cpu"))} CPU devices; it must be set '
                'before the first JAX computation of the process, or left 0') from None


def select_devices(config: ml_collections.ConfigDict) -> tuple[list, list]:
    """(devices to pmap over, this process's share of them).

    Splits the CPU into config.cpu_devices first if asked. A multi-host run uses every
    device of every process; a single process may pmap over its first config.num_devices.
    """
    split_cpu(config.cpu_devices)
    local = jax.local_devices()
    if jax.process_count() > 1:
        if config.num_devices:
            raise errors.ConfigError(
                f'config.num_devices={config.num_devices} but a multi-host run uses every '
                f'device of its {jax.process_count()} processes; set it to 0')
        # Process p's devices sit at global positions [p * L, (p + 1) * L), which data.Layout
        # relies on; jax.devices() is ordered by id, which need not follow processes.
        return sorted(jax.devices(), key=lambda d: (d.process_index, d.id)), local
    wanted = config.num_devices or len(local)
    if wanted > len(local):
        raise errors.ConfigError(
            f'config.num_devices={wanted} but only {len(local)} local devices exist; '
            f'choose 0 (all) or 1..{len(local)}')
    return local[:wanted], local[:wanted]


def initialize_distributed(coordinator_address: str, num_processes: int | None,
                           process_id: int | None, auto_detect: bool) -> None:
    """Joins a multi-process JAX run; call it before any other JAX call of the process.

    Either all three of coordinator_address, num_processes and process_id (e.g. local
    processes or a GPU cluster), or auto_detect (TPU VM workers, Slurm: JAX finds them);
    neither leaves a single-process run.
    """
    given = {'coordinator_address': bool(coordinator_address),
             'num_processes': num_processes is not None, 'process_id': process_id is not None}
    if any(given.values()) and not all(given.values()):
        missing = ', '.join(name for name, present in given.items() if not present)
        raise errors.ConfigError(
            'multi-host flags coordinator_address, num_processes and process_id go together; '
            f'missing: {missing}')
    if all(given.values()):
        if auto_detect:
            raise errors.ConfigError('multi-host: give either --multihost_auto or the '
                                      'coordinator_address, num_processes and process_id, '
                                      'not both')
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise errors.ConfigError(
                f'multi-host: process_id={process_id} must be in 0..{num_processes - 1} '
                f'(num_processes={num_processes}, at least 1)')
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    elif auto_detect:
        jax.distributed.initialize()


def process_zero_first(fn):
    """fn() on process 0, then on the others once it has finished: for work that writes
    shared files (preparing a dataset), which concurrent processes would race on."""
    if jax.process_count() == 1:
        return fn()
    result, error = None, None
    if jax.process_index() == 0:
        try:
            result = fn()
        except Exception as e:  # the others must hear of it, not wait for it
            error = e
    failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if error is not None:
        raise error
    if failed:
        raise errors.PeerError('process 0 failed first (its own error says why)')
    return result if jax.process_index() == 0 else fn()


# Linux caps a process's memory maps (vm.max_map_count, 65,530 by default). Each run of a
# study builds its model, optimizer and programs anew, and JAX's in-memory caches keep every
# run's executables, about 740 maps a run of the seed CNN on this CPU: a study of about 90
# runs in one process hit the cap and crashed (docs/pitfalls.md). Past this share of the
# cap the caches are dropped; the next run loads its programs from the persistent cache
# again (about a second once; the same executables, so the same results).
MAPS_RELEASE_SHARE = 0.5


def release_programs_if_maps_high() -> bool:
    """Drops JAX's in-memory caches if this process holds more than MAPS_RELEASE_SHARE of
    the memory maps Linux allows; returns whether it did (never where /proc is absent)."""
    try:
        with open('/proc/self/maps') as f:
            used = sum(1 for _ in f)
        with open('/proc/sys/vm/max_map_count') as f:
            cap = int(f.read())
    except (OSError, ValueError):
        return False
    if used < MAPS_RELEASE_SHARE * cap:
        return False
    jax.clear_caches()
    logging.info('released compiled programs: %d of %d memory maps in use', used, cap)
    return True
