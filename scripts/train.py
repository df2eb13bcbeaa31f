"""Trains one run: python scripts/train.py --config=configs/default.py --workdir=DIR."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_study import cli, train  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/default.py.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, "Directory for this run's record.")
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
    del argv
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
    cli.run(main)
