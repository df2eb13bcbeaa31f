"""What the paper configs share: their two variants, the refusal of a fixed sweep where the
cpu variant is a tuned comparison, and where the official MNIST lies."""

import os

from bn_study import errors
from bn_study.paths import REPO

FULL, CPU = 'full', 'cpu'
VARIANTS = {'': FULL, 'cpu': CPU}  # the config argument -> the variant
# The four official MNIST archives, where this workplace keeps them beside the repository;
# elsewhere '' (TFDS downloads them).
_SHARED_MNIST = os.path.join(os.path.dirname(REPO), 'shared', 'datasets', 'mnist')
MNIST_MANUAL_DIR = _SHARED_MNIST if os.path.isdir(_SHARED_MNIST) else ''


def variant(arg: str | None, config_file: str) -> str:
    """FULL or CPU from the config argument; anything else is refused with the choices."""
    if (arg or '') not in VARIANTS:
        name = os.path.relpath(config_file, REPO)
        raise errors.ConfigError(f'{name}:{arg} is no variant; choose one of: (none, the full '
                                  'protocol), cpu')
    return VARIANTS[arg or '']


def full_only(arg: str | None, config_file: str) -> str:
    """get_sweep's variant in a config whose cpu variant is a tuned comparison: FULL, or a
    ConfigError for cpu (its runs come from get_tuning, stage by stage, through
    studies/tuning.py; a fixed grid here would be one nothing runs)."""
    if variant(arg, config_file) == CPU:
        name = os.path.relpath(config_file, REPO)
        raise errors.ConfigError(
            f'{name}:cpu is a tuned comparison: its runs come from get_tuning(\'cpu\') '
            '(each option at its own learning rate, then the comparison seeds), not from '
            'get_sweep, which is the full variant\'s fixed sweep')
    return FULL
