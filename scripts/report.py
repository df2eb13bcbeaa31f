"""Writes REPORT.md and its figures from a sweep's run records.

    python scripts/report.py --sweep_dir=studies/seed_question --report_dir=results/seed_question
"""

import os

from absl import flags

from bn_study import cli
from bn_study.analysis import report
from bn_study import errors

_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'A sweep directory (scripts/sweep.py).')
_REPORT_DIR = flags.DEFINE_string('report_dir', '', 'Where REPORT.md and the figures go; '
                                  'default: the sweep dir.')
flags.mark_flags_as_required(['sweep_dir'])


def main(argv):
    del argv
    if not os.path.isdir(_SWEEP_DIR.value):
        raise errors.ConfigError(f'--sweep_dir={_SWEEP_DIR.value} is not a directory')
    print(f'report: {report.write_report(_SWEEP_DIR.value, _REPORT_DIR.value)}')


if __name__ == '__main__':
    cli.run(main)
