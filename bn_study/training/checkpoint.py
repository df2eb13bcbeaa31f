"""Orbax checkpoints in <workdir>/checkpoints: save every N steps and at the end, keep the last
K, and restore the newest one that reads back whole.

A checkpoint holds one replica of the training state (parameters, batch statistics, optimizer
state, step) and the host-side progress of the current epoch. The runs have no random layers:
data order and augmentation are pure functions of (seed, step), so restoring the step
restores the RNG and the position in the data stream.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from bn_study import errors, records

CHECKPOINT_DIR = records.CHECKPOINT_DIR


def _directory(workdir) -> epath.Path:
    """<workdir>/checkpoints, absolute as orbax wants; cloud paths (gs://...) already are, and
    epath's absolute() would mangle them."""
    directory = epath.Path(workdir) / CHECKPOINT_DIR
    return directory if '://' in os.fspath(directory) else directory.absolute()


def _state_tree(state) -> dict:
    return {'step': state.step, 'params': state.params, 'batch_stats': state.batch_stats,
            'opt_state': state.opt_state}


class Checkpoints:
    """The run's CheckpointManager; every process calls it, orbax lets process 0 write."""

    def __init__(self, workdir, every_steps: int, keep: int):
        self.every_steps = every_steps
        self.directory = _directory(workdir)
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def due(self, step: int, total_steps: int) -> bool:
        return step == total_steps or bool(self.every_steps and step % self.every_steps == 0)

    def save(self, state, progress: dict) -> None:
        """`state`: one replica on the host; `progress`: JSON-serialisable run progress.

        The save is asynchronous; a kill while it is in flight leaves a temporary folder that
        orbax ignores, and the previous checkpoint stands.
        """
        step = int(state.step)
        saved = self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_state_tree(state)),
            progress=ocp.args.JsonSave(progress)))
        if not saved:  # orbax skips a step at or below its newest one without raising
            raise RuntimeError(f'orbax did not save step {step} in {self.directory} (its '
                               f'newest step is {self.manager.latest_step()})')

    def restore_latest(self, template):
        """(state, progress) from the newest readable checkpoint, or None if none exists.

        A checkpoint that fails to read (corrupt or partial files) is reported, renamed to
        '<step>.unreadable' (kept for inspection; orbax would otherwise refuse every save up
        to its step) and the one before it is tried. If none reads, the run is refused
        rather than silently restarted.
        """
        target = jax.tree.map(np.asarray, _state_tree(template))
        unreadable = []
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()))
            except Exception as e:  # orbax and tensorstore raise many types for bad files
                message = str(e).splitlines()[0][:200] if str(e) else ''
                logging.warning('checkpoint at step %d is unreadable (%s: %s); falling back to '
                                'the previous one', step, type(e).__name__, message)
                unreadable.append(step)
                continue
            self._set_aside(unreadable)
            tree = restored['state']
            state = template.replace(step=tree['step'], params=tree['params'],
                                     batch_stats=tree['batch_stats'],
                                     opt_state=tree['opt_state'])
            return state, dict(restored['progress'])
        if unreadable:
            raise errors.CheckpointError(
                f'no checkpoint in {self.directory} reads back (steps '
                f'{", ".join(map(str, unreadable))}; see the warnings above); move them away '
                'to start the run again from scratch')
        return None

    def _set_aside(self, steps: list[int]) -> None:
        if not steps:
            return
        if jax.process_index() == 0:
            for step in steps:
                (self.directory / str(step)).rename(self.directory / f'{step}.unreadable')
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices('bn_study: unreadable checkpoints set aside')
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def read_newest(workdir) -> dict:
    """The newest checkpoint's state as saved (dicts of numpy arrays), for analysis: no
    template needed, and nothing in the workdir is created or removed."""
    manager = ocp.CheckpointManager(_directory(workdir),
                                    options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))
        return jax.tree.map(np.asarray, restored['state'])
    finally:
        manager.close()
