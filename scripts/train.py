"""Trains one run: python scripts/train.py --config=configs/default.py --workdir=DIR.

Rerunning the same command resumes from the workdir's newest checkpoint. On several hosts,
start it on every one with --multihost_auto (TPU VMs) or with --coordinator_address,
--num_processes and --process_id (or the JAX_* environment variables named in --help).
"""

from absl import flags
from ml_collections import config_flags

from bn_study import cli
from bn_study.training import loop

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/default.py.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, "Directory for this run's record.")
flags.mark_flags_as_required(['config', 'workdir'])
cli.define_multihost_flags()


def main(argv):
    del argv
    cli.initialize_multihost()  # before any other JAX call
    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
    cli.run(main)
