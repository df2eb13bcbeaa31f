"""What the paper configs share: their two variants and where the official MNIST lies."""

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
