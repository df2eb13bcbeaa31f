"""Runs a config file's sweep and prints test accuracy per placement.

python scripts/sweep.py --config=configs/seed_question.py --sweep_dir=studies/seed_question
A rerun skips runs already complete. --config.x=y overrides apply to every run.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_study import choices, cli, results, sweep, train  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Study config with get_sweep().',
                                          lock_config=True)
_SWEEP_DIR = flags.DEFINE_string('sweep_dir', None, 'Directory holding one workdir per run.')
flags.mark_flags_as_required(['config', 'sweep_dir'])


def main(argv):
    module, arg = cli.config_module(config_flags.get_config_filename(flags.FLAGS['config']))
    if not hasattr(module, 'get_sweep'):
        raise choices.ConfigError(f'{module.__file__} defines no get_sweep(); it is no study')
    counts = sweep.run_sweep(_CONFIG.value, module.get_sweep(arg), _SWEEP_DIR.value,
                             train.train_and_evaluate)
    table = results.placement_table(results.load_runs(_SWEEP_DIR.value))
    print(f'\nTest accuracy after the last epoch, per placement ({_SWEEP_DIR.value}):')
    print(table.to_string(float_format=lambda v: f'{v:.4f}'))
    print(f'\nruns: {counts["ran"]} ran, {counts["skipped"]} skipped, '
          f'{counts["diverged"]} diverged, {counts["failed"]} failed')
    if counts['failed']:
        sys.exit(1)


if __name__ == '__main__':
    cli.run(main)
