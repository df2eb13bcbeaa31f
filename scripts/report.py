"""Writes REPORT.md and its figures from a sweep's run records.

    python scripts/report.py --sweep_dir=studies/seed_question --report_dir=results/seed_question
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from bn_study import choices, cli, report  # noqa: E402

_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'A sweep directory (scripts/sweep.py).')
_REPORT_DIR = flags.DEFINE_string('report_dir', '', 'Where REPORT.md and the figures go; '
                                  'default: the sweep dir.')
flags.mark_flags_as_required(['sweep_dir'])


def main(argv):
    del argv
    if not os.path.isdir(_SWEEP_DIR.value):
        raise choices.ConfigError(f'--sweep_dir={_SWEEP_DIR.value} is not a directory')
    print(f'report: {report.write_report(_SWEEP_DIR.value, _REPORT_DIR.value)}')


if __name__ == '__main__':
    cli.run(main)
