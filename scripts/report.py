"""Writes REPORT.md and its figures from a sweep's run records.

    python scripts/report.py --sweep_dir=studies/seed_question --report_dir=results/seed_question

Light: needs numpy, pandas, scipy and matplotlib (and absl, etils, ml_collections), never
JAX, Flax, orbax or TensorFlow, so it runs where the study's runs were only copied to.
"""

import os

from absl import flags

from bn_study import cli, errors
from bn_study.analysis import report

_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'A sweep directory (scripts/sweep.py).')
_REPORT_DIR = flags.DEFINE_string('report_dir', '', 'Where REPORT.md and the figures go; '
                                  'default: the sweep dir.')
flags.mark_flags_as_required(['sweep_dir'])


def main(argv):
    del argv
    if not os.path.isdir(_SWEEP_DIR.value):
        raise errors.ConfigError(f'--sweep_dir={_SWEEP_DIR.value} is not a directory')
    print(f'report: {report.write_report(_SWEEP_DIR.value, _REPORT_DIR.value).path}')


if __name__ == '__main__':
    cli.run(main)
