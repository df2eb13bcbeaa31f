"""Orbax checkpoints in <workdir>/checkpoints: save every N steps and at the end, keep the last
K, and restore the newest one that reads back whole.

A checkpoint holds one replica of the training state (parameters, batch statistics, optimizer
state, step) and the host-side progress of the current epoch. The runs have no random layers:
data order and augmentation are pure functions of (seed, step), so restoring the step
restores the RNG and the position in the data stream.
"""

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

CHECKPOINT_DIR = 'checkpoints'


def _state_tree(state) -> dict:
    return {'step': state.step, 'params': state.params, 'batch_stats': state.batch_stats,
            'opt_state': state.opt_state}


class Checkpoints:
    """The run's CheckpointManager; every process calls it, orbax lets process 0 write."""

    def __init__(self, workdir, every_steps: int, keep: int):
        self.every_steps = every_steps
        self.directory = epath.Path(workdir) / CHECKPOINT_DIR
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
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_state_tree(state)),
            progress=ocp.args.JsonSave(progress)))

    def restore_latest(self, template):
        """(state, progress) from the newest readable checkpoint, or None if none exists.

        A checkpoint that fails to read (corrupt or partial files) is reported and skipped
        in favour of the one before it.
        """
        target = jax.tree.map(np.asarray, _state_tree(template))
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore()))
            except Exception as e:  # orbax and tensorstore raise many types for bad files
                logging.warning('checkpoint at step %d is unreadable (%s: %s); falling back to '
                                'the previous one', step, type(e).__name__,
                                str(e).splitlines()[0][:200] if str(e) else '')
                continue
            tree = restored['state']
            state = template.replace(step=tree['step'], params=tree['params'],
                                     batch_stats=tree['batch_stats'],
                                     opt_state=tree['opt_state'])
            return state, dict(restored['progress'])
        return None

    def read(self, step: int | None = None) -> dict:
        """A checkpoint's state as saved (dicts of numpy arrays), the newest by default; for
        analysis, with no template needed."""
        step = self.steps()[-1] if step is None else step
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))
        return jax.tree.map(np.asarray, restored['state'])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
